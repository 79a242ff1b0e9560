//! `--op lease`: the life of `--leases` leases in three timed phases, each
//! printed as one JSON line (op `lease-grant`, `lease-keepalive`,
//! `lease-revoke`):
//!
//! 1. grant: `--clients` callers grant the leases (TTL `--lease-ttl`), each
//!    followed by a put of one key on it unless `--lease-keys false` (the
//!    latency is the pair's);
//! 2. keep-alive: `--clients` LeaseKeepAlive streams renew every lease
//!    `--keepalive-rounds` times, each stream with up to `--keepalive-window`
//!    requests unanswered, as clientv3 sends keep-alives without waiting;
//!    latency is from a request's send to its answer; an answer of TTL 0
//!    counts as an error;
//! 3. revoke: `--clients` callers revoke every lease (deleting its key).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use tonic::transport::Channel;

use crate::etcdserverpb::kv_client::KvClient;
use crate::etcdserverpb::lease_client::LeaseClient;
use crate::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest,
};
use crate::{ms, Args};

const LEASE_PREFIX: &str = "bench/lease/";

/// What one caller (or stream) measured.
struct Part {
    hist: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Part {
    fn new() -> Part {
        Part {
            hist: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
            errors: 0,
            first_error: None,
        }
    }

    fn ok(&mut self, since: Instant) {
        let us = since.elapsed().as_micros().max(1) as u64;
        self.hist.saturating_record(us);
    }

    fn failed(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

/// Prints one phase's JSON line.
fn report(name: &str, args: &Args, conns: usize, parts: Vec<Part>, seconds: f64) {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("bounds");
    let mut errors = 0;
    let mut first_error = None;
    for p in parts {
        hist.add(&p.hist).expect("same histogram bounds");
        errors += p.errors;
        if first_error.is_none() {
            first_error = p.first_error;
        }
    }
    let requests = hist.len();
    let mut out = serde_json::json!({
        "op": name,
        "clients": args.clients.max(1),
        "conns": conns,
        "leases": args.leases,
        "requests": requests,
        "errors": errors,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "ops_per_sec": ((requests as f64 / seconds.max(1e-9)) * 10.0).round() / 10.0,
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

/// Runs `clients` callers of `call(lease index)` over the lease indexes.
async fn per_lease<F, Fut>(args: &Args, chans: &[Channel], call: F) -> (Vec<Part>, f64)
where
    F: Fn(Channel, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(AtomicU64::new(0));
    let begin = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients.max(1) {
        let (call, next, chan) = (call.clone(), next.clone(), chans[c % chans.len()].clone());
        let total = args.leases;
        tasks.push(tokio::spawn(async move {
            let mut part = Part::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return part;
                }
                let t0 = Instant::now();
                match call(chan.clone(), i).await {
                    Ok(()) => part.ok(t0),
                    Err(e) => part.failed(e),
                }
            }
        }));
    }
    let mut parts = Vec::new();
    for t in tasks {
        parts.push(t.await.expect("caller task"));
    }
    (parts, begin.elapsed().as_secs_f64())
}

/// One keep-alive stream renewing `ids`, `rounds` times over.
async fn keep_alive_stream(chan: Channel, ids: Vec<i64>, rounds: u64, window: usize) -> Part {
    let mut part = Part::new();
    if ids.is_empty() {
        return part;
    }
    let window = window.max(1);
    let (tx, rx) = tokio::sync::mpsc::channel(window);
    let total = ids.len() as u64 * rounds;
    let mut sent_at: VecDeque<Instant> = VecDeque::new();
    let (mut sent, mut answered) = (0u64, 0u64);
    let send_more = |sent_at: &mut VecDeque<Instant>, sent: &mut u64| {
        while *sent < total && sent_at.len() < window {
            let id = ids[(*sent % ids.len() as u64) as usize];
            if tx.try_send(LeaseKeepAliveRequest { id }).is_err() {
                return;
            }
            sent_at.push_back(Instant::now());
            *sent += 1;
        }
    };
    // The first requests go out with the call: a server may send its
    // response headers only with its first answer.
    send_more(&mut sent_at, &mut sent);
    let mut client = LeaseClient::new(chan);
    let mut answers = match client
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(e) => {
            part.failed(format!("{}: {}", e.code(), e.message()));
            return part;
        }
    };
    while answered < total {
        send_more(&mut sent_at, &mut sent);
        match answers.message().await {
            Ok(Some(resp)) => {
                let t0 = sent_at.pop_front().expect("an answer to a request");
                if resp.ttl > 0 {
                    part.ok(t0);
                } else {
                    part.failed(format!("lease {:x} answered TTL {}", resp.id, resp.ttl));
                }
                answered += 1;
            }
            Ok(None) => {
                part.failed("keep-alive stream ended".into());
                return part;
            }
            Err(e) => {
                part.failed(format!("{}: {}", e.code(), e.message()));
                return part;
            }
        }
    }
    part
}

pub async fn run(args: &Args, chans: &[Channel]) {
    let conns = chans.len();
    let ids: Arc<Vec<AtomicI64>> = Arc::new((0..args.leases).map(|_| AtomicI64::new(0)).collect());

    let (ttl, keys, value) = (args.lease_ttl, args.lease_keys, vec![b'v'; args.value_size]);
    let granted = ids.clone();
    let (parts, seconds) = per_lease(args, chans, move |chan, i| {
        let (granted, value) = (granted.clone(), value.clone());
        async move {
            let g = LeaseClient::new(chan.clone())
                .lease_grant(LeaseGrantRequest { ttl, id: 0 })
                .await
                .map_err(|e| format!("grant: {}: {}", e.code(), e.message()))?
                .into_inner();
            granted[i as usize].store(g.id, Ordering::Relaxed);
            if keys {
                KvClient::new(chan)
                    .put(PutRequest {
                        key: format!("{LEASE_PREFIX}{i:08}").into_bytes(),
                        value,
                        lease: g.id,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| format!("put: {}: {}", e.code(), e.message()))?;
            }
            Ok(())
        }
    })
    .await;
    report("lease-grant", args, conns, parts, seconds);

    let all: Vec<i64> = ids
        .iter()
        .map(|id| id.load(Ordering::Relaxed))
        .filter(|id| *id != 0)
        .collect();
    let streams = args.clients.max(1);
    let begin = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..streams {
        let mine: Vec<i64> = all.iter().skip(s).step_by(streams).copied().collect();
        tasks.push(tokio::spawn(keep_alive_stream(
            chans[s % conns].clone(),
            mine,
            args.keepalive_rounds.max(1),
            args.keepalive_window,
        )));
    }
    let mut parts = Vec::new();
    for t in tasks {
        parts.push(t.await.expect("keep-alive task"));
    }
    report(
        "lease-keepalive",
        args,
        conns,
        parts,
        begin.elapsed().as_secs_f64(),
    );

    let revoked = ids.clone();
    let (parts, seconds) = per_lease(args, chans, move |chan, i| {
        let id = revoked[i as usize].load(Ordering::Relaxed);
        async move {
            if id == 0 {
                return Err("never granted".into());
            }
            LeaseClient::new(chan)
                .lease_revoke(LeaseRevokeRequest { id })
                .await
                .map(|_| ())
                .map_err(|e| format!("revoke: {}: {}", e.code(), e.message()))
        }
    })
    .await;
    report("lease-revoke", args, conns, parts, seconds);
}
