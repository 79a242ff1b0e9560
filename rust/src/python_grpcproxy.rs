//! The pyo3 entry of the gRPC proxy: `_core.GrpcProxy`. Python parses
//! `etcdcore grpc-proxy start` and hands the settings over; the proxy then
//! runs on its own threads (see `crate::grpcproxy`).

use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;

use crate::grpcproxy::tls::ClusterTls;
use crate::grpcproxy::{Proxy, ProxyConfig};

/// The proxy's settings (see `_core.pyi`).
#[pyclass(module = "etcdcore._core", frozen)]
#[derive(Clone)]
pub struct GrpcProxyConfig {
    inner: ProxyConfig,
    /// --debug: debug records reach Python's logging.
    debug: bool,
}

#[pymethods]
impl GrpcProxyConfig {
    #[new]
    #[pyo3(signature = (*, listen_addr, endpoints, advertise_client_url, resolver_prefix,
        resolver_ttl, namespace, metrics_addr, max_send_bytes, max_recv_bytes, dial_timeout,
        cert, key, cacert, insecure_skip_tls_verify, cert_file, key_file, trusted_ca_file,
        keepalive_interval, keepalive_timeout, hostname, auto_sync_interval, debug=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        listen_addr: String,
        endpoints: Vec<String>,
        advertise_client_url: String,
        resolver_prefix: String,
        resolver_ttl: i64,
        namespace: Vec<u8>,
        metrics_addr: Option<String>,
        max_send_bytes: usize,
        max_recv_bytes: usize,
        dial_timeout: f64,
        cert: String,
        key: String,
        cacert: String,
        insecure_skip_tls_verify: bool,
        cert_file: String,
        key_file: String,
        trusted_ca_file: String,
        keepalive_interval: f64,
        keepalive_timeout: f64,
        hostname: String,
        auto_sync_interval: f64,
        debug: bool,
    ) -> GrpcProxyConfig {
        let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
        GrpcProxyConfig {
            inner: ProxyConfig {
                listen_addr,
                endpoints,
                advertise_client_url,
                resolver_prefix,
                resolver_ttl,
                namespace,
                metrics_addr,
                max_send_bytes,
                max_recv_bytes,
                dial_timeout: secs(dial_timeout),
                cluster_tls: ClusterTls {
                    cert_file: cert,
                    key_file: key,
                    ca_file: cacert,
                    insecure_skip_verify: insecure_skip_tls_verify,
                },
                listen_cert_file: cert_file,
                listen_key_file: key_file,
                listen_trusted_ca_file: trusted_ca_file,
                keepalive_interval: secs(keepalive_interval),
                keepalive_timeout: secs(keepalive_timeout),
                hostname,
                auto_sync_interval: secs(auto_sync_interval),
            },
            debug,
        }
    }
}

/// A gRPC proxy (see `_core.pyi`).
#[pyclass(module = "etcdcore._core")]
pub struct GrpcProxy {
    config: ProxyConfig,
    debug: bool,
    running: Mutex<Option<Proxy>>,
}

#[pymethods]
impl GrpcProxy {
    #[new]
    fn new(config: &GrpcProxyConfig) -> GrpcProxy {
        GrpcProxy {
            config: config.inner.clone(),
            debug: config.debug,
            running: Mutex::new(None),
        }
    }

    /// Binds and serves; OSError for a listener that cannot be bound,
    /// RuntimeError for settings refused (TLS files...).
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        // Below Info, every record of tonic/h2/hyper would cross into
        // pyo3-log's per-target lookup: a few percent of the proxy's CPU.
        log::set_max_level(if self.debug {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Info
        });
        let config = self.config.clone();
        let proxy = py.allow_threads(|| Proxy::start(config)).map_err(|e| {
            if e.starts_with("listen tcp") {
                PyOSError::new_err(e)
            } else {
                PyRuntimeError::new_err(e)
            }
        })?;
        *self.running.lock().unwrap() = Some(proxy);
        Ok(())
    }

    /// The address the listener is bound to ("host:port").
    fn local_addr(&self) -> Option<String> {
        self.running
            .lock()
            .unwrap()
            .as_ref()
            .map(|p| p.local_addr.to_string())
    }

    /// Waits up to `timeout` seconds; True if the proxy stopped serving on
    /// its own.
    fn wait(&self, py: Python<'_>, timeout: f64) -> bool {
        let running = self.running.lock().unwrap();
        let Some(p) = running.as_ref() else {
            return true;
        };
        py.allow_threads(|| p.wait(Duration::from_secs_f64(timeout.max(0.0))))
    }

    /// (cluster watchers, client watchers on them).
    fn watch_stats(&self) -> (usize, usize) {
        self.running
            .lock()
            .unwrap()
            .as_ref()
            .map(|p| {
                let s = p.stats();
                (s.groups, s.watchers)
            })
            .unwrap_or((0, 0))
    }

    fn stop(&self, py: Python<'_>) {
        let proxy = self.running.lock().unwrap().take();
        if let Some(p) = proxy {
            py.allow_threads(|| p.stop());
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<GrpcProxyConfig>()?;
    m.add_class::<GrpcProxy>()?;
    Ok(())
}
