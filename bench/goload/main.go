// goload: a load generator on Go's clientv3, the client Kubernetes and most
// production users reach etcd with. It drives the load shape of etcd's own
// `benchmark` tool: --clients goroutines in flight, spread round-robin over
// --conns clientv3 clients (one gRPC connection each), and prints one JSON
// line with the same fields as bench/loadgen.
//
// Built offline from Debian's golang-go and golang-etcd-server-dev (etcd
// 3.4's clientv3) in GOPATH mode; bench/run.py does that (see bench/README.md).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
)

type result struct {
	Op        string  `json:"op"`
	Clients   int     `json:"clients"`
	Conns     int     `json:"conns"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50       float64 `json:"p50_ms"`
	P90       float64 `json:"p90_ms"`
	P99       float64 `json:"p99_ms"`
	Max       float64 `json:"max_ms"`
	FirstErr  string  `json:"first_error,omitempty"`
}

func main() {
	endpoints := flag.String("endpoint", "127.0.0.1:2379", "client URL host:port (comma-separated for several)")
	op := flag.String("op", "put", "put | get-linearizable | get-serializable | range")
	clients := flag.Int("clients", 1000, "requests in flight")
	conns := flag.Int("conns", 100, "gRPC connections (clientv3 clients)")
	total := flag.Int64("total", 100000, "stop after this many requests")
	duration := flag.Float64("duration-secs", 10, "stop after this many seconds")
	valueSize := flag.Int("value-size", 256, "bytes per value")
	keySpace := flag.Int64("key-space", 100000, "puts pick keys at random from this many")
	sequential := flag.Bool("sequential", false, "puts write keys 0, 1, 2, ... once each")
	rangeKeys := flag.Int("range-keys", 1000, "keys a range returns")
	flag.Parse()

	eps := strings.Split(*endpoints, ",")
	cs := make([]*clientv3.Client, *conns)
	for i := range cs {
		c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
		if err != nil {
			fmt.Fprintln(os.Stderr, "connect:", err)
			os.Exit(1)
		}
		defer c.Close()
		cs[i] = c
	}
	value := strings.Repeat("v", *valueSize)
	ctx := context.Background()

	switch *op {
	case "get-linearizable", "get-serializable":
		if _, err := cs[0].Put(ctx, "bench/get", value); err != nil {
			fmt.Fprintln(os.Stderr, "setup:", err)
			os.Exit(1)
		}
	case "range":
		for i := 0; i < *rangeKeys; i++ {
			if _, err := cs[0].Put(ctx, fmt.Sprintf("bench/range/%08d", i), value); err != nil {
				fmt.Fprintln(os.Stderr, "setup:", err)
				os.Exit(1)
			}
		}
	}

	var issued, errors int64
	var firstErr atomic.Value
	deadline := time.Now().Add(time.Duration(*duration * float64(time.Second)))
	lat := make([][]time.Duration, *clients)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := cs[w%len(cs)]
			rng := rand.New(rand.NewSource(int64(w) + time.Now().UnixNano()))
			for time.Now().Before(deadline) {
				n := atomic.AddInt64(&issued, 1) - 1
				if n >= *total {
					return
				}
				t0 := time.Now()
				var err error
				switch *op {
				case "put":
					k := n
					if !*sequential {
						k = rng.Int63n(*keySpace)
					}
					_, err = c.Put(ctx, fmt.Sprintf("bench/put/%08d", k), value)
				case "get-linearizable":
					_, err = c.Get(ctx, "bench/get")
				case "get-serializable":
					_, err = c.Get(ctx, "bench/get", clientv3.WithSerializable())
				case "range":
					_, err = c.Get(ctx, "bench/range/", clientv3.WithPrefix())
				}
				if err != nil {
					if atomic.AddInt64(&errors, 1) == 1 {
						firstErr.Store(err.Error())
					}
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}(w)
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := int(p * float64(len(all)-1))
		return float64(all[i].Microseconds()) / 1000
	}
	r := result{
		Op: *op, Clients: *clients, Conns: *conns, Requests: int64(len(all)) + errors,
		Errors: errors, Seconds: secs, OpsPerSec: float64(len(all)) / secs,
		P50: pct(0.5), P90: pct(0.9), P99: pct(0.99), Max: pct(1),
	}
	if e, ok := firstErr.Load().(string); ok {
		r.FirstErr = e
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}
