//! The proxy's own metrics (/proxy/metrics), named as etcd's proxy names
//! them, plus the cluster watchers it holds open and the client watchers
//! on them (etcdcore's, for seeing the coalescing at work).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use super::watch::hub::HubStats;

#[derive(Default)]
pub struct ProxyMetrics {
    pub events_coalescing: AtomicU64,
    pub cache_keys: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Client watchers paused because their stream had too much unread.
    pub watchers_paused: AtomicU64,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

impl ProxyMetrics {
    /// The Prometheus text of every family.
    pub fn render(&self, hub: HubStats) -> String {
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        family(
            &mut out,
            "etcd_grpc_proxy_cache_hits_total",
            "gauge",
            "Total number of cache hits",
            get(&self.cache_hits),
        );
        family(
            &mut out,
            "etcd_grpc_proxy_cache_keys_total",
            "gauge",
            "Total number of keys/ranges cached",
            get(&self.cache_keys),
        );
        family(
            &mut out,
            "etcd_grpc_proxy_cache_misses_total",
            "gauge",
            "Total number of cache misses",
            get(&self.cache_misses),
        );
        family(
            &mut out,
            "etcd_grpc_proxy_events_coalescing_total",
            "counter",
            "Total number of events coalescing",
            get(&self.events_coalescing),
        );
        family(
            &mut out,
            "etcd_grpc_proxy_watchers_coalescing_total",
            "gauge",
            "Total number of current watchers coalescing",
            hub.watchers.saturating_sub(hub.groups) as f64,
        );
        family(
            &mut out,
            "etcdcore_grpc_proxy_watchers_paused_total",
            "counter",
            "Client watchers paused (and later resumed) because their stream had too much unread",
            get(&self.watchers_paused),
        );
        family(
            &mut out,
            "etcdcore_grpc_proxy_cluster_watchers",
            "gauge",
            "Watchers the proxy holds open on the cluster",
            hub.groups as f64,
        );
        family(
            &mut out,
            "etcdcore_grpc_proxy_client_watchers",
            "gauge",
            "Client watchers served from the cluster watchers",
            hub.watchers as f64,
        );
        out
    }
}
