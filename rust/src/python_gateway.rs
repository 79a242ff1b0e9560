//! The pyo3 face of [`crate::gateway`]: `etcdcore._core.Gateway`.

use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

use crate::gateway::{self, Endpoint};

#[pyclass(module = "etcdcore._core")]
pub struct Gateway {
    inner: Option<gateway::Gateway>,
}

#[pymethods]
impl Gateway {
    /// Serves the listening socket `listener_fd` (the gateway owns it from
    /// now on), forwarding to `endpoints` ((host:port, priority, weight)).
    /// `on_event(kind, address, error)` hears of endpoints going down or up.
    #[new]
    fn new(
        listener_fd: i32,
        endpoints: Vec<(String, u16, u16)>,
        retry_delay_seconds: f64,
        on_event: PyObject,
    ) -> PyResult<Gateway> {
        // SAFETY: the caller hands over a listening socket it no longer uses.
        let listener = unsafe { std::net::TcpListener::from_raw_fd(listener_fd) };
        let report: gateway::Report = Arc::new(move |kind: &str, address: &str, error: &str| {
            Python::with_gil(|py| {
                if let Err(e) = on_event.call1(py, (kind, address, error)) {
                    e.print(py);
                }
            })
        });
        let endpoints = endpoints
            .into_iter()
            .map(|(address, priority, weight)| Endpoint {
                address,
                priority,
                weight,
            })
            .collect();
        let delay = Duration::from_secs_f64(retry_delay_seconds.max(0.0));
        let inner = gateway::Gateway::start(listener, endpoints, delay, report)
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(Gateway { inner: Some(inner) })
    }

    /// Stops accepting and drops every proxied connection.
    fn stop(&mut self, py: Python<'_>) {
        if let Some(mut g) = self.inner.take() {
            py.allow_threads(|| g.stop());
        }
    }
}
