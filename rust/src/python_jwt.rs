//! The pyo3 binding of [`crate::auth::jwt`]: Python parses `--auth-token`
//! with it at startup and the Auth service signs tokens with it; members
//! verify tokens in Rust.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::auth::jwt::{self, TokenProvider};
use crate::python::CoreError;

/// The key of `--auth-token jwt,...` (see `_core.pyi`).
#[pyclass(module = "etcdcore._core", frozen)]
#[derive(Clone)]
pub struct JwtTokens {
    pub inner: Arc<jwt::JwtTokens>,
}

#[pymethods]
impl JwtTokens {
    /// (provider, unknown option names) for an `--auth-token` value: None
    /// for simple tokens; ValueError with etcd's message for a bad value.
    #[staticmethod]
    fn from_flag(py: Python<'_>, flag: &str) -> PyResult<(Option<JwtTokens>, Vec<String>)> {
        let parsed = py
            .allow_threads(|| jwt::parse_flag(flag))
            .map_err(PyValueError::new_err)?;
        let provider = match parsed.provider {
            TokenProvider::Simple => None,
            TokenProvider::Jwt(t) => Some(JwtTokens {
                inner: Arc::from(t),
            }),
        };
        Ok((provider, parsed.unknown_options))
    }

    /// A token for `username` at auth store revision `revision`.
    fn sign(&self, py: Python<'_>, username: &str, revision: u64) -> PyResult<String> {
        py.allow_threads(|| self.inner.sign(username, revision))
            .map_err(|e| CoreError::new_err((tonic::Code::Unknown as i32, e)))
    }

    /// (user name, revision) of a valid token, else None.
    fn verify(&self, py: Python<'_>, token: &str) -> Option<(String, u64)> {
        py.allow_threads(|| self.inner.verify(token))
    }

    #[getter]
    fn ttl_seconds(&self) -> f64 {
        self.inner.ttl().as_secs_f64()
    }
}
