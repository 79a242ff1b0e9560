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
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"google.golang.org/grpc/metadata"
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
	op := flag.String("op", "put", "put | get-linearizable | get-serializable | range | watch")
	clients := flag.Int("clients", 1000, "requests in flight")
	conns := flag.Int("conns", 100, "gRPC connections (clientv3 clients)")
	total := flag.Int64("total", 100000, "stop after this many requests")
	duration := flag.Float64("duration-secs", 10, "stop after this many seconds")
	valueSize := flag.Int("value-size", 256, "bytes per value")
	keySpace := flag.Int64("key-space", 100000, "puts pick keys at random from this many")
	sequential := flag.Bool("sequential", false, "puts write keys 0, 1, 2, ... once each")
	rangeKeys := flag.Int("range-keys", 1000, "keys a range returns")
	nWatchers := flag.Int("watchers", 100, "watch: watchers on the prefix the writers put under")
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
	// Latencies of watch events are measured from here: each put's value
	// starts with its send time in nanoseconds since runStart.
	runStart := time.Now()
	var ws *watchers
	if *op == "watch" {
		ws = startWatchers(cs, *nWatchers, runStart)
	}
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
				case "watch":
					v := []byte(value)
					binary.LittleEndian.PutUint64(v, uint64(t0.Sub(runStart).Nanoseconds()))
					_, err = c.Put(ctx, fmt.Sprintf("%s%08d", watchPrefix, rng.Int63n(*keySpace)), string(v))
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
	if ws != nil {
		// Let the watchers drain what is still in flight.
		time.Sleep(2 * time.Second)
		var puts int64
		for _, l := range lat {
			puts += int64(len(l))
		}
		printJSON(ws.finish(*clients, *conns, puts, errors, secs))
		return
	}
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
	printJSON(r)
}

func printJSON(v interface{}) {
	out, _ := json.Marshal(v)
	fmt.Println(string(out))
}

const watchPrefix = "bench/watch/"

// watchers: --watchers clientv3 watches on watchPrefix, each on a Watch
// stream of its own (distinct outgoing metadata keeps clientv3 from sharing
// one), spread round-robin over the clients (connections).
type watchers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	hist   histogram
	events int64
	errs   int64
	first  string
	n      int
}

func startWatchers(cs []*clientv3.Client, n int, runStart time.Time) *watchers {
	ctx, cancel := context.WithCancel(context.Background())
	ws := &watchers{cancel: cancel, n: n}
	created := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		ws.wg.Add(1)
		go func(i int) {
			defer ws.wg.Done()
			wctx := metadata.AppendToOutgoingContext(ctx, "bench-watcher", fmt.Sprint(i))
			ch := cs[i%len(cs)].Watch(wctx, watchPrefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
			var hist histogram
			var events int64
			var errMsg string
			for resp := range ch {
				if resp.Created {
					created <- struct{}{}
					continue
				}
				if err := resp.Err(); err != nil {
					if ctx.Err() == nil {
						errMsg = err.Error()
					}
					break
				}
				now := time.Since(runStart)
				for _, ev := range resp.Events {
					if len(ev.Kv.Value) >= 8 {
						sent := time.Duration(binary.LittleEndian.Uint64(ev.Kv.Value))
						hist.record(now - sent)
					}
					events++
				}
			}
			ws.mu.Lock()
			ws.hist.add(&hist)
			ws.events += events
			if errMsg != "" {
				ws.errs++
				if ws.first == "" {
					ws.first = errMsg
				}
			}
			ws.mu.Unlock()
		}(i)
	}
	for i := 0; i < n; i++ {
		<-created
	}
	return ws
}

type watchResult struct {
	Op        string  `json:"op"`
	Clients   int     `json:"clients"`
	Conns     int     `json:"conns"`
	Watchers  int     `json:"watchers"`
	Puts      int64   `json:"puts"`
	Requests  int64   `json:"requests"`
	Expected  int64   `json:"events_expected"`
	Errors    int64   `json:"errors"`
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50       float64 `json:"p50_ms"`
	P90       float64 `json:"p90_ms"`
	P99       float64 `json:"p99_ms"`
	Max       float64 `json:"max_ms"`
	FirstErr  string  `json:"first_error,omitempty"`
}

// finish stops the watchers and sums them up as bench/loadgen's watch op
// does: events delivered per second of the write phase, latency from a
// put's send to each watcher receiving its event; a missing event counts
// as an error.
func (ws *watchers) finish(clients, conns int, puts, putErrors int64, secs float64) watchResult {
	ws.cancel()
	ws.wg.Wait()
	pct := ws.hist.quantileMs
	expected := puts * int64(ws.n)
	missing := expected - ws.events
	if missing < 0 {
		missing = 0
	}
	return watchResult{
		Op: "watch", Clients: clients, Conns: conns, Watchers: ws.n, Puts: puts,
		Requests: ws.events, Expected: expected, Errors: putErrors + ws.errs + missing,
		Seconds: secs, OpsPerSec: float64(ws.events) / secs,
		P50: pct(0.5), P90: pct(0.9), P99: pct(0.99), Max: pct(1), FirstErr: ws.first,
	}
}

// histogram of latencies in buckets 1% wide (from 1 µs): a million events
// per second for a minute fit in 16 KiB.
type histogram struct {
	counts [2048]int64
	n      int64
}

func (h *histogram) record(d time.Duration) {
	us := float64(d.Microseconds())
	i := 0
	if us > 1 {
		i = int(math.Log(us) / math.Log(1.01))
	}
	if i >= len(h.counts) {
		i = len(h.counts) - 1
	}
	h.counts[i]++
	h.n++
}

func (h *histogram) add(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

func (h *histogram) quantileMs(p float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(p * float64(h.n-1))
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen > rank {
			return math.Pow(1.01, float64(i)) / 1000
		}
	}
	return 0
}
