//! The numbers one member keeps for `/metrics`, in atomics.
//!
//! The hot paths (the raft loop, the WAL, the peer transport, every gRPC
//! call) only add to atomics here; nothing is locked per request. Python
//! reads a [`MetricsSnapshot`] at scrape time and writes etcd's families
//! (`python/etcdcore/http/metrics.py`), so names, help texts and labels live
//! there and only the values live here.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::server::grpc_metrics::{GrpcCounters, GrpcMethodSnapshot};

/// A Prometheus histogram of durations with fixed upper bounds.
pub struct Histogram {
    /// Upper bounds in seconds, ascending; one more bucket counts the rest.
    bounds: Vec<f64>,
    /// Observations per bucket (not cumulative), `bounds.len() + 1` of them.
    buckets: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

/// A histogram as Prometheus writes it: cumulative counts per upper bound.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations at or below it).
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    /// `count` buckets whose bounds start at `start` seconds and grow by
    /// `factor` (client_golang's ExponentialBuckets, which etcd uses).
    pub fn exponential(start: f64, factor: f64, count: usize) -> Histogram {
        let bounds: Vec<f64> = (0..count).map(|i| start * factor.powi(i as i32)).collect();
        let buckets = (0..=count).map(|_| AtomicU64::new(0)).collect();
        Histogram {
            bounds,
            buckets,
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The count is the sum of the buckets read, so the +Inf bucket always
    /// equals it even while observations race the read.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (bound, n) in self.bounds.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let count = cumulative + self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Raft traffic with one peer (etcd's rafthttp counters for it).
#[derive(Default)]
pub struct PeerCounters {
    pub sent_bytes: AtomicU64,
    pub received_bytes: AtomicU64,
    /// Messages that could not be sent (queue full, stream broken).
    pub sent_failures: AtomicU64,
}

/// (peer id, sent bytes, received bytes, sent failures).
pub type PeerSnapshot = (u64, u64, u64, u64);

/// The peers' counters, by member id. The map is locked only to find a
/// peer's counters; senders and receivers keep the `Arc` they were given.
#[derive(Default)]
pub struct PeerTraffic {
    peers: Mutex<HashMap<u64, Arc<PeerCounters>>>,
}

impl PeerTraffic {
    pub fn peer(&self, id: u64) -> Arc<PeerCounters> {
        self.peers
            .lock()
            .expect("peer metrics poisoned")
            .entry(id)
            .or_default()
            .clone()
    }

    fn snapshot(&self) -> Vec<PeerSnapshot> {
        let peers = self.peers.lock().expect("peer metrics poisoned");
        let mut out: Vec<PeerSnapshot> = peers
            .iter()
            .map(|(id, c)| {
                (
                    *id,
                    c.sent_bytes.load(Ordering::Relaxed),
                    c.received_bytes.load(Ordering::Relaxed),
                    c.sent_failures.load(Ordering::Relaxed),
                )
            })
            .collect();
        out.sort_unstable();
        out
    }
}

/// Everything one member counts; shared by its raft loop, WAL, transport
/// and gRPC server, and kept across restarts of the member.
pub struct Metrics {
    /// Proposals this member made and still waits on (etcd's gauge).
    pub proposals_pending: AtomicU64,
    /// Proposals that timed out (etcd counts its proposals that fail to be
    /// made or time out; ours are never refused by Raft, only retried).
    pub proposals_failed: AtomicU64,
    /// The WAL's `fdatasync`, as etcd times it.
    pub wal_fsync: Arc<Histogram>,
    /// Applying one batch of committed entries to the MVCC store: see
    /// `ReadyLoop::apply` for why that is our backend commit.
    pub backend_commit: Histogram,
    /// Taking a snapshot of the whole state (Maintenance.Snapshot, and a
    /// snapshot raft-rs sends a lagging peer).
    pub backend_snapshot: Histogram,
    pub peers: PeerTraffic,
    pub grpc: GrpcCounters,
}

impl Default for Metrics {
    fn default() -> Self {
        // etcd: 1 ms to 8.192 s for disk latencies, 10 ms to 655.36 s for
        // backend snapshots.
        Metrics {
            proposals_pending: AtomicU64::new(0),
            proposals_failed: AtomicU64::new(0),
            wal_fsync: Arc::new(Histogram::exponential(0.001, 2.0, 14)),
            backend_commit: Histogram::exponential(0.001, 2.0, 14),
            backend_snapshot: Histogram::exponential(0.01, 2.0, 17),
            peers: PeerTraffic::default(),
            grpc: GrpcCounters::default(),
        }
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

/// All of [`Metrics`] read at one moment, for the scrape.
pub struct MetricsSnapshot {
    pub proposals_pending: u64,
    pub proposals_failed: u64,
    pub wal_fsync: HistogramSnapshot,
    pub backend_commit: HistogramSnapshot,
    pub backend_snapshot: HistogramSnapshot,
    pub peers: Vec<PeerSnapshot>,
    pub grpc: Vec<GrpcMethodSnapshot>,
}

impl Metrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            proposals_pending: self.proposals_pending.load(Ordering::Relaxed),
            proposals_failed: self.proposals_failed.load(Ordering::Relaxed),
            wal_fsync: self.wal_fsync.snapshot(),
            backend_commit: self.backend_commit.snapshot(),
            backend_snapshot: self.backend_snapshot.snapshot(),
            peers: self.peers.snapshot(),
            grpc: self.grpc.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_bounds_are_client_golangs() {
        let h = Histogram::exponential(0.001, 2.0, 14);
        let bounds: Vec<f64> = h.snapshot().buckets.iter().map(|b| b.0).collect();
        assert_eq!(bounds.len(), 14);
        assert_eq!(bounds[0], 0.001);
        assert_eq!(bounds[13], 8.192);
    }

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let h = Histogram::exponential(0.001, 2.0, 3);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_micros(1500));
        h.observe(Duration::from_secs(1));
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.001, 1), (0.002, 2), (0.004, 2)]);
        assert_eq!(s.count, 3);
        assert!((s.sum_seconds - 1.002).abs() < 1e-9);
    }
}
