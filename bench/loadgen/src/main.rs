//! loadgen: drives an etcd v3 gRPC endpoint with one kind of request, the way
//! etcd's `tools/benchmark` does, and prints one JSON line of results.
//!
//! N clients (concurrent in-flight requests, each issuing its requests one
//! after another) share C HTTP/2 connections round-robin. The run stops after
//! `--total` requests or `--duration-secs` seconds, whichever comes first.
//! `--op lease` is different: see `lease.rs`.
//! Failed requests are counted in `errors` and never stop the run; only
//! successful requests enter the latency histogram and `ops_per_sec`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};

mod lease;

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

use etcdserverpb::kv_client::KvClient;
use etcdserverpb::watch_client::WatchClient;
use etcdserverpb::{watch_request, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest};

const PUT_PREFIX: &str = "bench/put/";
const GET_KEY: &str = "bench/get";
const RANGE_PREFIX: &str = "bench/range/";
const WATCH_PREFIX: &str = "bench/watch/";

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Op {
    /// Put a `--value-size` value under a random key of the key space.
    Put,
    /// Serializable Range of one pre-written key (served locally).
    GetSerializable,
    /// Linearizable Range of one pre-written key (needs a ReadIndex).
    GetLinearizable,
    /// Linearizable Range over `--range-keys` pre-written keys under a prefix.
    Range,
    /// Watch fan-out: `--watchers` streams watch one prefix while `--clients`
    /// writers put under it; throughput is events delivered per second, and
    /// latency is from a put's send to each watcher receiving its event.
    Watch,
    /// `--leases` leases granted (with a key each), kept alive over
    /// `--clients` streams, then revoked: three results, one per phase.
    Lease,
    /// Idle watchers: `--watchers` watchers, each on a key of its own, over
    /// `--streams` streams; prints once all are created, then holds them
    /// open for `--duration-secs` (for measuring the server's memory).
    WatchHold,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::GetSerializable => "get-serializable",
            Op::GetLinearizable => "get-linearizable",
            Op::Range => "range",
            Op::Watch => "watch",
            Op::Lease => "lease",
            Op::WatchHold => "watch-hold",
        }
    }
}

#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "etcd v3 gRPC load generator")]
struct Args {
    /// host:port of the server's client URL (plain-text gRPC).
    #[arg(long, default_value = "127.0.0.1:2379")]
    endpoint: String,
    #[arg(long, value_enum, default_value = "put")]
    op: Op,
    /// Concurrent in-flight requests (each client is sequential).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// HTTP/2 connections the clients are spread over.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Stop after this many requests (successful or not).
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Bytes per value written.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Puts pick keys uniformly at random from this many.
    #[arg(long, default_value_t = 100_000)]
    key_space: u64,
    /// Puts write keys 0, 1, 2, ... in order (each once) instead of random
    /// ones: a load of `--total` distinct keys.
    #[arg(long)]
    sequential: bool,
    /// Keys written before a `range` run and returned by each Range.
    #[arg(long, default_value_t = 1000)]
    range_keys: u64,
    /// Watchers for `--op watch` (spread over the connections) and
    /// `--op watch-hold`.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Watchers per watch stream (etcd benchmark's --watch-per-stream).
    #[arg(long, default_value_t = 1)]
    watchers_per_stream: usize,
    /// Watch this one key, and put only to it, instead of a prefix of keys.
    #[arg(long)]
    watch_key: Option<String>,
    /// Where the watchers connect (a proxy), when not `--endpoint`.
    #[arg(long)]
    watch_endpoint: Option<String>,
    /// Streams the watchers of `--op watch-hold` are spread over.
    #[arg(long, default_value_t = 100)]
    streams: usize,
    /// HTTP/2 connections the watch streams are spread over.
    #[arg(long, default_value_t = 0)]
    watch_conns: usize,
    /// Puts per second over all clients (0: as fast as they are answered).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Per-request deadline in seconds; a request past it counts as an error.
    #[arg(long, default_value_t = 10.0)]
    timeout_secs: f64,
    /// Leases for `--op lease`.
    #[arg(long, default_value_t = 100_000)]
    leases: u64,
    /// Their TTL in seconds (long enough that none expires during the run).
    #[arg(long, default_value_t = 3600)]
    lease_ttl: i64,
    /// Put one key on each lease as it is granted.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    lease_keys: bool,
    /// Keep-alives each stream has unanswered at most.
    #[arg(long, default_value_t = 64)]
    keepalive_window: usize,
    /// How many times every lease is renewed.
    #[arg(long, default_value_t = 1)]
    keepalive_rounds: u64,
}

/// xorshift64*: plenty for spreading keys, and no extra dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

async fn connect(endpoint: &str, timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    let uri = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    Endpoint::from_shared(uri)?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .connect()
        .await
}

/// Writes the keys that the read operations read. Errors abort the run: a
/// read benchmark over missing data would measure the wrong thing.
async fn populate(args: &Args, chans: &[Channel], value: &[u8]) -> Result<(), String> {
    match args.op {
        Op::Put | Op::Watch | Op::Lease | Op::WatchHold => Ok(()),
        Op::GetSerializable | Op::GetLinearizable => {
            let mut kv = KvClient::new(chans[0].clone());
            kv.put(PutRequest {
                key: GET_KEY.as_bytes().to_vec(),
                value: value.to_vec(),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| format!("populate {GET_KEY}: {e}"))
        }
        Op::Range => {
            let workers = 16u64.min(args.range_keys.max(1));
            let mut tasks = Vec::new();
            for w in 0..workers {
                let mut kv = KvClient::new(chans[w as usize % chans.len()].clone());
                let value = value.to_vec();
                let n = args.range_keys;
                tasks.push(tokio::spawn(async move {
                    let mut i = w;
                    while i < n {
                        kv.put(PutRequest {
                            key: format!("{RANGE_PREFIX}{i:08}").into_bytes(),
                            value: value.clone(),
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| format!("populate range key {i}: {e}"))?;
                        i += workers;
                    }
                    Ok::<(), String>(())
                }));
            }
            for t in tasks {
                t.await.map_err(|e| e.to_string())??;
            }
            Ok(())
        }
    }
}

struct ClientResult {
    hist: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    last_done: Instant,
}

#[allow(clippy::too_many_arguments)]
async fn run_client(
    id: usize,
    op: Op,
    mut kv: KvClient<Channel>,
    issued: Arc<AtomicU64>,
    total: u64,
    deadline: Instant,
    key_space: u64,
    sequential: bool,
    value: Arc<Vec<u8>>,
    start: Instant,
    pace: Option<Duration>,
    watch_key: Option<Arc<String>>,
) -> ClientResult {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9E37_79B9_7F4A_7C15)
        ^ ((id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut rng = Rng::new(seed);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds");
    let mut errors = 0u64;
    let mut first_error = None;
    let mut last_done = start;
    let range_end = prefix_end(RANGE_PREFIX.as_bytes());
    // Paced clients start spread over one interval, so they do not send together.
    let mut next_send =
        Instant::now() + pace.map_or(Duration::ZERO, |p| p.mul_f64((id % 997) as f64 / 997.0));
    loop {
        if let Some(p) = pace {
            tokio::time::sleep_until(next_send.into()).await;
            next_send += p;
        }
        if Instant::now() >= deadline {
            break;
        }
        let n = issued.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            break;
        }
        let t0 = Instant::now();
        let res = match op {
            Op::Put => {
                let k = if sequential {
                    n
                } else {
                    rng.next() % key_space.max(1)
                };
                kv.put(PutRequest {
                    key: format!("{PUT_PREFIX}{k:08}").into_bytes(),
                    value: value.as_ref().clone(),
                    ..Default::default()
                })
                .await
                .map(|_| ())
            }
            Op::GetSerializable | Op::GetLinearizable => kv
                .range(RangeRequest {
                    key: GET_KEY.as_bytes().to_vec(),
                    serializable: op == Op::GetSerializable,
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            Op::Range => kv
                .range(RangeRequest {
                    key: RANGE_PREFIX.as_bytes().to_vec(),
                    range_end: range_end.clone(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            Op::WatchHold => unreachable!("watch-hold runs no clients"),
            Op::Watch => {
                // The value carries the send time so watchers can time delivery.
                let mut v = value.as_ref().clone();
                let sent = t0.duration_since(start).as_nanos() as u64;
                v[..8].copy_from_slice(&sent.to_le_bytes());
                let key = match &watch_key {
                    Some(k) => k.as_bytes().to_vec(),
                    None => format!("{WATCH_PREFIX}{:08}", rng.next() % key_space.max(1))
                        .into_bytes(),
                };
                kv.put(PutRequest {
                    key,
                    value: v,
                    ..Default::default()
                })
                .await
                .map(|_| ())
            }
            Op::Lease => unreachable!("lease runs its own phases"),
        };
        let done = Instant::now();
        last_done = done;
        match res {
            Ok(()) => {
                let us = done.duration_since(t0).as_micros().max(1) as u64;
                hist.saturating_record(us);
            }
            Err(e) => {
                errors += 1;
                if first_error.is_none() {
                    first_error = Some(format!("{}: {}", e.code(), e.message()));
                }
            }
        }
    }
    ClientResult {
        hist,
        errors,
        first_error,
        last_done,
    }
}

fn ms(us: u64) -> f64 {
    (us as f64) / 1000.0
}

struct WatchResult {
    hist: Histogram<u64>,
    events: u64,
    /// When its last event arrived.
    last: Option<Instant>,
}

/// One watch stream on WATCH_PREFIX; records delivery latency per event
/// until `done` is set (the request stream stays open so the server keeps it).
async fn run_watcher(
    chan: Channel,
    start: Instant,
    ready: tokio::sync::mpsc::Sender<()>,
    done: Arc<std::sync::atomic::AtomicBool>,
    per_stream: usize,
    watch_key: Option<Arc<String>>,
    received: Arc<AtomicU64>,
) -> Result<WatchResult, String> {
    let per_stream = per_stream.max(1);
    let (tx, rx) = tokio::sync::mpsc::channel(per_stream);
    let (key, range_end) = match &watch_key {
        Some(k) => (k.as_bytes().to_vec(), Vec::new()),
        None => (
            WATCH_PREFIX.as_bytes().to_vec(),
            prefix_end(WATCH_PREFIX.as_bytes()),
        ),
    };
    for _ in 0..per_stream {
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: key.clone(),
                    range_end: range_end.clone(),
                    ..Default::default()
                },
            )),
        };
        tx.send(create).await.map_err(|e| e.to_string())?;
    }
    let mut client = WatchClient::new(chan).max_decoding_message_size(64 * 1024 * 1024);
    let mut inbound = client
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds");
    let mut events = 0u64;
    let mut last = None;
    let mut created = 0usize;
    while !done.load(Ordering::Relaxed) {
        let msg = match tokio::time::timeout(Duration::from_millis(200), inbound.message()).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => break,
            Err(_) => continue,
            Ok(Err(e)) => return Err(e.to_string()),
        };
        if msg.created {
            if msg.canceled {
                return Err(format!("watch refused: {}", msg.cancel_reason));
            }
            created += 1;
            if created == per_stream {
                let _ = ready.send(()).await;
            }
        }
        if msg.canceled && !msg.created {
            return Err(format!("watch cancelled: {}", msg.cancel_reason));
        }
        let now = start.elapsed().as_nanos() as u64;
        for ev in &msg.events {
            if let Some(kv) = &ev.kv {
                if kv.value.len() >= 8 {
                    let sent = u64::from_le_bytes(kv.value[..8].try_into().expect("8 bytes"));
                    hist.saturating_record((now.saturating_sub(sent) / 1000).max(1));
                }
            }
            events += 1;
        }
        if !msg.events.is_empty() {
            last = Some(Instant::now());
            received.fetch_add(msg.events.len() as u64, Ordering::Relaxed);
        }
    }
    drop(tx);
    Ok(WatchResult { hist, events, last })
}

/// `--op watch-hold`: creates the watchers, says so, and keeps them.
async fn hold_watchers(args: &Args, chans: &[Channel]) {
    let streams = args.streams.clamp(1, args.watchers.max(1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let (created_tx, mut created_rx) = tokio::sync::mpsc::channel::<Result<(), String>>(streams);
    for s in 0..streams {
        let chan = chans[s % chans.len()].clone();
        let keys: Vec<usize> = (s..args.watchers).step_by(streams).collect();
        let created_tx = created_tx.clone();
        let hold = Duration::from_secs_f64(args.duration_secs.max(0.0)) + Duration::from_secs(3600);
        tasks.push(tokio::spawn(async move {
            // Every create is queued before the call starts: grpc-go sends
            // the response headers the call waits for only with its first
            // answer.
            let (tx, rx) = tokio::sync::mpsc::channel(keys.len().max(1));
            for k in &keys {
                let req = WatchRequest {
                    request_union: Some(watch_request::RequestUnion::CreateRequest(
                        WatchCreateRequest {
                            key: format!("bench/hold/{k:08}").into_bytes(),
                            ..Default::default()
                        },
                    )),
                };
                if tx.send(req).await.is_err() {
                    break;
                }
            }
            let mut client = WatchClient::new(chan);
            let mut inbound = match client
                .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
            {
                Ok(r) => r.into_inner(),
                Err(e) => {
                    let _ = created_tx.send(Err(e.to_string())).await;
                    return;
                }
            };
            let mut created = 0;
            while created < keys.len() {
                match inbound.message().await {
                    Ok(Some(m)) if m.created => created += 1,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        let _ = created_tx.send(Err(e.to_string())).await;
                        return;
                    }
                }
            }
            let _ = created_tx.send(Ok(())).await;
            // Hold the stream (and so its watchers) until the process ends.
            let _ = tokio::time::timeout(hold, async {
                while let Ok(Some(_)) = inbound.message().await {}
            })
            .await;
            drop(tx);
        }));
    }
    drop(created_tx);
    let mut errors = 0u64;
    let mut first_error = None;
    for _ in 0..streams {
        match created_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
            None => break,
        }
    }
    let mut out = serde_json::json!({
        "op": "watch-hold",
        "watchers": args.watchers,
        "streams": streams,
        "errors": errors,
        "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    });
    if let Some(e) = first_error {
        out["first_error"] = serde_json::Value::String(e);
    }
    println!("{out}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    tokio::time::sleep(Duration::from_secs_f64(args.duration_secs.max(0.0))).await;
    for t in tasks {
        t.abort();
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let clients = args.clients.max(1);
    let conns = args.conns.max(1).min(clients);
    let timeout = Duration::from_secs_f64(args.timeout_secs.max(0.001));

    let mut chans = Vec::with_capacity(conns);
    for _ in 0..conns {
        match connect(&args.endpoint, timeout).await {
            Ok(c) => chans.push(c),
            Err(e) => {
                eprintln!("loadgen: cannot connect to {}: {e:?}", args.endpoint);
                std::process::exit(2);
            }
        }
    }
    if args.op == Op::Lease {
        lease::run(&args, &chans).await;
        return;
    }
    let value: Arc<Vec<u8>> = Arc::new(vec![b'v'; args.value_size]);
    if let Err(e) = populate(&args, &chans, &value).await {
        eprintln!("loadgen: {e}");
        std::process::exit(3);
    }

    if args.op == Op::WatchHold {
        hold_watchers(&args, &chans).await;
        return;
    }
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let watch_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch_key = args.watch_key.clone().map(Arc::new);
    let received = Arc::new(AtomicU64::new(0));
    let mut watchers = Vec::new();
    if args.op == Op::Watch {
        let target = args.watch_endpoint.as_deref().unwrap_or(&args.endpoint);
        let n = if args.watch_conns > 0 { args.watch_conns } else { conns };
        let mut wchans = Vec::with_capacity(n);
        for _ in 0..n {
            match connect(target, timeout).await {
                Ok(c) => wchans.push(c),
                Err(e) => {
                    eprintln!("loadgen: cannot connect to {target}: {e:?}");
                    std::process::exit(2);
                }
            }
        }
        let per = args.watchers_per_stream.max(1);
        let streams = args.watchers.div_ceil(per);
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(streams.max(1));
        for w in 0..streams {
            let this = per.min(args.watchers - w * per);
            watchers.push(tokio::spawn(run_watcher(
                wchans[w % n].clone(),
                start,
                ready_tx.clone(),
                watch_done.clone(),
                this,
                watch_key.clone(),
                received.clone(),
            )));
        }
        drop(ready_tx);
        for _ in 0..streams {
            if ready_rx.recv().await.is_none() {
                break;
            }
        }
    }
    let pace = (args.rate > 0.0)
        .then(|| Duration::from_secs_f64(clients as f64 / args.rate));
    // Latencies are measured from `start`; the run itself begins now.
    let begin = Instant::now();
    let deadline = begin + Duration::from_secs_f64(args.duration_secs.max(0.0));
    let mut tasks = Vec::with_capacity(clients);
    for id in 0..clients {
        let kv =
            KvClient::new(chans[id % conns].clone()).max_decoding_message_size(64 * 1024 * 1024);
        tasks.push(tokio::spawn(run_client(
            id,
            args.op,
            kv,
            issued.clone(),
            args.total,
            deadline,
            args.key_space,
            args.sequential,
            value.clone(),
            start,
            pace,
            watch_key.clone(),
        )));
    }

    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds");
    let mut errors = 0u64;
    let mut first_error: Option<String> = None;
    let mut end = begin;
    for t in tasks {
        match t.await {
            Ok(r) => {
                hist.add(&r.hist).expect("same histogram bounds");
                errors += r.errors;
                if first_error.is_none() {
                    first_error = r.first_error;
                }
                end = end.max(r.last_done);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("client task: {e}"));
            }
        }
    }
    let seconds = end.duration_since(begin).as_secs_f64();
    let requests = hist.len();
    if args.op == Op::Watch {
        // Let the watchers drain what is still in flight: until every event
        // arrived, or none arrived for 2 s (30 s at most).
        let want = requests * args.watchers as u64;
        let mut seen = received.load(Ordering::Relaxed);
        let mut quiet_since = Instant::now();
        let drain_end = Instant::now() + Duration::from_secs(30);
        while seen < want && Instant::now() < drain_end {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now_seen = received.load(Ordering::Relaxed);
            if now_seen != seen {
                seen = now_seen;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        watch_done.store(true, Ordering::Relaxed);
        let puts = requests;
        let mut whist =
            Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds");
        let mut events = 0u64;
        // Delivery ends with the last event any watcher received.
        let mut delivered_by = end;
        for t in watchers {
            match t.await {
                Ok(Ok(r)) => {
                    whist.add(&r.hist).expect("same histogram bounds");
                    events += r.events;
                    if let Some(l) = r.last {
                        delivered_by = delivered_by.max(l);
                    }
                }
                Ok(Err(e)) => {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert_with(|| format!("watcher task: {e}"));
                }
            }
        }
        let expected = puts * args.watchers as u64;
        let seconds = delivered_by.duration_since(begin).as_secs_f64();
        let out = serde_json::json!({
            "op": "watch",
            "clients": clients,
            "conns": conns,
            "watchers": args.watchers,
            "puts": puts,
            "requests": events,
            "events_expected": expected,
            "errors": errors + expected.saturating_sub(events),
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "ops_per_sec": ((events as f64 / seconds.max(1e-9)) * 10.0).round() / 10.0,
            "p50_ms": ms(whist.value_at_quantile(0.50)),
            "p90_ms": ms(whist.value_at_quantile(0.90)),
            "p99_ms": ms(whist.value_at_quantile(0.99)),
            "max_ms": ms(whist.max()),
        });
        println!("{out}");
        return;
    }
    let ops_per_sec = if seconds > 0.0 {
        requests as f64 / seconds
    } else {
        0.0
    };
    let mut out = serde_json::json!({
        "op": args.op.name(),
        "clients": clients,
        "conns": conns,
        "requests": requests,
        "errors": errors,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "ops_per_sec": (ops_per_sec * 10.0).round() / 10.0,
        "p50_ms": ms(hist.value_at_quantile(0.50)),
        "p90_ms": ms(hist.value_at_quantile(0.90)),
        "p99_ms": ms(hist.value_at_quantile(0.99)),
        "max_ms": ms(hist.max()),
    });
    if let Some(e) = first_error {
        out["first_error"] = serde_json::Value::String(e);
    }
    println!("{out}");
}
