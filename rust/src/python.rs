//! The pyo3 bindings: `etcdcore._core`. Only translation lives here; the
//! work is done by [`crate::member::Member`] and [`crate::bridge::Bridge`].
//! Every call that may wait releases the GIL.

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use tonic::Status;

use crate::bridge::Item;
use crate::member::{Member, MemberConfig};

create_exception!(
    _core,
    CoreError,
    PyException,
    "An etcd error: args are (grpc_code, message)."
);

fn core_err(s: Status) -> PyErr {
    CoreError::new_err((s.code() as i32, s.message().to_string()))
}

/// (id, name, peer URLs, client URLs, is learner), as `Core.members` returns it.
type MemberRow = (u64, String, Vec<String>, Vec<String>, bool);

/// The settings of one member (see `_core.pyi`).
#[pyclass(module = "etcdcore._core", frozen)]
#[derive(Clone)]
pub struct CoreConfig {
    inner: MemberConfig,
}

#[pymethods]
impl CoreConfig {
    #[new]
    #[pyo3(signature = (*, name, data_dir, client_listen, client_urls, peer_listen, peer_urls,
        initial_cluster, initial_cluster_state, cluster_token, snapshot_count, max_request_bytes,
        max_txn_ops, quota_backend_bytes, heartbeat_ms, election_ms, client_tls=None, peer_tls=None,
        jwt=None, max_concurrent_streams=u32::MAX,
        client_http_gateway=None, backend_batch_interval_ms=0, backend_batch_limit=0,
        lease_checkpoint_interval_ms=0, watch_progress_notify_interval_ms=600_000))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: String,
        data_dir: PathBuf,
        client_listen: Vec<String>,
        client_urls: Vec<String>,
        peer_listen: Vec<String>,
        peer_urls: Vec<String>,
        initial_cluster: Vec<(String, Vec<String>)>,
        initial_cluster_state: String,
        cluster_token: String,
        snapshot_count: u64,
        max_request_bytes: usize,
        max_txn_ops: usize,
        quota_backend_bytes: u64,
        heartbeat_ms: u64,
        election_ms: u64,
        client_tls: Option<TlsConfig>,
        peer_tls: Option<TlsConfig>,
        jwt: Option<crate::python_jwt::JwtTokens>,
        max_concurrent_streams: u32,
        client_http_gateway: Option<PathBuf>,
        backend_batch_interval_ms: u64,
        backend_batch_limit: u64,
        lease_checkpoint_interval_ms: u64,
        watch_progress_notify_interval_ms: u64,
    ) -> CoreConfig {
        CoreConfig {
            inner: MemberConfig {
                name,
                data_dir,
                client_listen,
                client_urls,
                peer_listen,
                peer_urls,
                initial_cluster,
                initial_cluster_state,
                cluster_token,
                snapshot_count,
                max_request_bytes,
                max_txn_ops,
                quota_backend_bytes,
                backend_batch_interval: Duration::from_millis(backend_batch_interval_ms),
                backend_batch_limit,
                heartbeat: Duration::from_millis(heartbeat_ms.max(1)),
                election: Duration::from_millis(election_ms.max(1)),
                client_tls: client_tls.map(|t| t.inner),
                peer_tls: peer_tls.map(|t| t.inner),
                jwt: jwt.map(|j| j.inner),
                max_concurrent_streams,
                client_http_gateway,
                lease_checkpoint_interval: (lease_checkpoint_interval_ms > 0)
                    .then(|| Duration::from_millis(lease_checkpoint_interval_ms)),
                watch_progress_notify_interval: Duration::from_millis(
                    watch_progress_notify_interval_ms,
                ),
            },
        }
    }
}

/// (permission type, key, range end), as `Core.auth_role_permissions` returns it.
type PermissionRow<'py> = (i32, Bound<'py, PyBytes>, Bound<'py, PyBytes>);

/// One side's TLS files and policy (see `_core.pyi`).
#[pyclass(module = "etcdcore._core", frozen)]
#[derive(Clone)]
pub struct TlsConfig {
    inner: crate::tls::TlsSettings,
}

#[pymethods]
impl TlsConfig {
    #[new]
    #[pyo3(signature = (*, cert_file, key_file, trusted_ca_file, client_cert_auth, cipher_suites, min_version, crl_file=String::new()))]
    fn new(
        cert_file: String,
        key_file: String,
        trusted_ca_file: String,
        client_cert_auth: bool,
        cipher_suites: Vec<String>,
        min_version: String,
        crl_file: String,
    ) -> TlsConfig {
        TlsConfig {
            inner: crate::tls::TlsSettings {
                cert_file,
                key_file,
                trusted_ca_file,
                client_cert_auth,
                cipher_suites,
                min_version,
                crl_file,
            },
        }
    }
}

/// One etcdcore member (see `_core.pyi`).
#[pyclass(module = "etcdcore._core")]
pub struct Core {
    // Queries share the member; only start and stop take it exclusively.
    member: RwLock<Member>,
    bridge: std::sync::Arc<crate::bridge::Bridge>,
}

impl Core {
    fn with<T>(&self, f: impl FnOnce(&Member) -> T) -> T {
        f(&self.member.read().expect("member poisoned"))
    }
}

#[pymethods]
impl Core {
    #[new]
    fn new(config: &CoreConfig) -> PyResult<Core> {
        let member = Member::new(config.inner.clone())
            .map_err(|e| CoreError::new_err((2, e.to_string())))?;
        let bridge = member.bridge().clone();
        Ok(Core {
            member: RwLock::new(member),
            bridge,
        })
    }

    fn start(&self, py: Python<'_>) -> PyResult<()> {
        py.allow_threads(|| self.member.write().expect("member poisoned").start())
            .map_err(|e| CoreError::new_err((2, e.to_string())))
    }

    fn stop(&self, py: Python<'_>) {
        py.allow_threads(|| self.member.write().expect("member poisoned").stop())
    }

    fn bridge_fd(&self) -> i32 {
        self.bridge.wake_fd()
    }

    fn drain(&self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        let items = self.bridge.drain();
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let obj = match item {
                Item::Unary {
                    call_id,
                    method,
                    request,
                } => ("unary", call_id, method, PyBytes::new(py, &request))
                    .into_pyobject(py)?
                    .into_any(),
                Item::Open { call_id, method } => {
                    ("open", call_id, method).into_pyobject(py)?.into_any()
                }
                Item::Msg { call_id, message } => ("msg", call_id, PyBytes::new(py, &message))
                    .into_pyobject(py)?
                    .into_any(),
                Item::HalfClose { call_id } => ("halfclose", call_id).into_pyobject(py)?.into_any(),
                Item::Close { call_id } => ("close", call_id).into_pyobject(py)?.into_any(),
                Item::Removed => ("removed",).into_pyobject(py)?.into_any(),
                Item::Published => ("published",).into_pyobject(py)?.into_any(),
                Item::Failed { reason } => ("failed", reason).into_pyobject(py)?.into_any(),
            };
            out.push(obj.unbind());
        }
        Ok(out)
    }

    fn respond(&self, call_id: u64, code: i32, message: String, payload: Vec<u8>) {
        self.bridge.respond(call_id, code, message, payload)
    }

    fn stream_send_many(&self, py: Python<'_>, items: Vec<(u64, Vec<u8>)>) -> Vec<u64> {
        py.allow_threads(|| self.bridge.stream_send_many(items))
    }

    fn stream_end(&self, call_id: u64, code: i32, message: String) {
        self.bridge.stream_end(call_id, code, message)
    }

    fn watcher_count(&self) -> usize {
        self.with(|m| m.watcher_count())
    }

    fn header(&self) -> (u64, u64, i64, u64) {
        self.with(|m| m.header())
    }

    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.with(|m| m.status()).map_err(core_err)?;
        let d = PyDict::new(py);
        d.set_item("member_id", s.member_id)?;
        d.set_item("cluster_id", s.cluster_id)?;
        d.set_item("leader", s.leader)?;
        d.set_item("raft_term", s.raft_term)?;
        d.set_item("raft_index", s.raft_index)?;
        d.set_item("raft_applied_index", s.raft_applied_index)?;
        d.set_item("revision", s.revision)?;
        d.set_item("compact_revision", s.compact_revision)?;
        d.set_item("db_size", s.db_size)?;
        d.set_item("db_size_in_use", s.db_size_in_use)?;
        d.set_item("keys", s.keys)?;
        d.set_item("is_learner", s.is_learner)?;
        d.set_item("leader_changes", s.leader_changes)?;
        Ok(d)
    }

    /// The core's counters and histograms now (see `_core.pyi`).
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.with(|m| m.metrics().snapshot());
        let histogram = |h: crate::metrics::HistogramSnapshot| (h.buckets, h.sum_seconds, h.count);
        let grpc: Vec<_> = s
            .grpc
            .into_iter()
            .map(|g| {
                (
                    (g.grpc_type, g.service, g.method, g.preinitialized),
                    (g.started, g.msg_received, g.msg_sent, g.handled.to_vec()),
                )
            })
            .collect();
        let d = PyDict::new(py);
        d.set_item("proposals_pending", s.proposals_pending)?;
        d.set_item("proposals_failed", s.proposals_failed)?;
        d.set_item("wal_fsync", histogram(s.wal_fsync))?;
        d.set_item("backend_commit", histogram(s.backend_commit))?;
        d.set_item("backend_snapshot", histogram(s.backend_snapshot))?;
        d.set_item("peers", s.peers)?;
        d.set_item("grpc", grpc)?;
        Ok(d)
    }

    fn members(&self) -> Vec<MemberRow> {
        self.with(|m| {
            m.members()
                .into_iter()
                .map(|m| (m.id, m.name, m.peer_urls, m.client_urls, m.is_learner))
                .collect()
        })
    }

    fn hash_kv(&self, revision: i64) -> PyResult<(u32, i64, i64)> {
        self.with(|m| m.hash_kv(revision)).map_err(core_err)
    }

    fn defragment(&self, py: Python<'_>) -> PyResult<(u64, u64)> {
        py.allow_threads(|| self.with(|m| m.defragment()))
            .map_err(core_err)
    }

    fn alarms(&self) -> PyResult<Vec<(u64, i32)>> {
        let a = self.with(|m| m.alarms()).map_err(core_err)?;
        Ok(a.into_iter().map(|a| (a.member_id, a.alarm)).collect())
    }

    fn alarm(
        &self,
        py: Python<'_>,
        action: i32,
        member_id: u64,
        alarm: i32,
    ) -> PyResult<Vec<(u64, i32)>> {
        let a = py
            .allow_threads(|| self.with(|m| m.alarm(action, member_id, alarm)))
            .map_err(core_err)?;
        Ok(a.into_iter().map(|a| (a.member_id, a.alarm)).collect())
    }

    fn compact(&self, py: Python<'_>, revision: i64) -> PyResult<i64> {
        py.allow_threads(|| self.with(|m| m.compact(revision)))
            .map_err(core_err)
    }

    /// Why the member stopped for good, if it did (a disk failure).
    fn failure(&self) -> Option<String> {
        self.with(|m| m.failure())
    }

    fn is_leader(&self) -> bool {
        self.with(|m| m.is_leader())
    }

    fn removed(&self) -> bool {
        self.with(|m| m.removed())
    }

    fn member_add(
        &self,
        py: Python<'_>,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> PyResult<u64> {
        py.allow_threads(|| self.with(|m| m.member_add(peer_urls, is_learner)))
            .map_err(core_err)
    }

    fn member_remove(&self, py: Python<'_>, member_id: u64) -> PyResult<()> {
        py.allow_threads(|| self.with(|m| m.member_remove(member_id)))
            .map_err(core_err)
    }

    fn member_promote(&self, py: Python<'_>, member_id: u64) -> PyResult<()> {
        py.allow_threads(|| self.with(|m| m.member_promote(member_id)))
            .map_err(core_err)
    }

    fn member_update(
        &self,
        py: Python<'_>,
        member_id: u64,
        peer_urls: Vec<String>,
    ) -> PyResult<()> {
        py.allow_threads(|| self.with(|m| m.member_update(member_id, peer_urls)))
            .map_err(core_err)
    }

    fn move_leader(&self, py: Python<'_>, target: u64) -> PyResult<()> {
        py.allow_threads(|| self.with(|m| m.move_leader(target)))
            .map_err(core_err)
    }

    /// Propose a serialized etcdcore.AuthAdminRequest; blocks until applied.
    fn auth_propose(&self, py: Python<'_>, request: Vec<u8>) -> PyResult<()> {
        let req = <crate::pb::internal::AuthAdminRequest as prost::Message>::decode(&request[..])
            .map_err(|e| CoreError::new_err((13, format!("bad auth request: {e}"))))?;
        py.allow_threads(|| self.with(|m| m.auth_propose(req)))
            .map_err(core_err)
    }

    fn auth_status(&self) -> PyResult<(bool, u64)> {
        self.with(|m| m.auth_status()).map_err(core_err)
    }

    fn auth_credentials(&self, name: &str) -> PyResult<Option<(String, bool)>> {
        self.with(|m| m.auth_credentials(name)).map_err(core_err)
    }

    fn auth_user_roles(&self, name: &str) -> PyResult<Option<Vec<String>>> {
        self.with(|m| m.auth_user_roles(name)).map_err(core_err)
    }

    fn auth_users(&self) -> PyResult<Vec<String>> {
        self.with(|m| m.auth_users()).map_err(core_err)
    }

    fn auth_role_permissions<'py>(
        &self,
        py: Python<'py>,
        name: &str,
    ) -> PyResult<Option<Vec<PermissionRow<'py>>>> {
        let perms = self
            .with(|m| m.auth_role_permissions(name))
            .map_err(core_err)?;
        Ok(perms.map(|ps| {
            ps.into_iter()
                .map(|(t, k, e)| (t, PyBytes::new(py, &k), PyBytes::new(py, &e)))
                .collect()
        }))
    }

    fn auth_roles(&self) -> PyResult<Vec<String>> {
        self.with(|m| m.auth_roles()).map_err(core_err)
    }

    fn internal_token(&self) -> PyResult<String> {
        self.with(|m| m.internal_token()).map_err(core_err)
    }
}

/// `snapshot status`: (hash, revision, total keys, total size) of a snapshot file.
#[pyfunction]
fn snapshot_status(py: Python<'_>, path: PathBuf) -> PyResult<(u32, i64, u64, u64)> {
    let st = py
        .allow_threads(|| crate::snapshot_file::status(&path))
        .map_err(|e| CoreError::new_err((2, e)))?;
    Ok((st.hash, st.revision, st.total_keys, st.total_size))
}

/// `snapshot restore`: a new member's data dir from a snapshot file.
#[pyfunction]
#[pyo3(signature = (path, *, data_dir, name, initial_cluster, cluster_token, skip_hash_check))]
fn snapshot_restore(
    py: Python<'_>,
    path: PathBuf,
    data_dir: PathBuf,
    name: String,
    initial_cluster: Vec<(String, Vec<String>)>,
    cluster_token: String,
    skip_hash_check: bool,
) -> PyResult<()> {
    let cfg = crate::snapshot_file::RestoreConfig {
        data_dir,
        name,
        initial_cluster,
        cluster_token,
        skip_hash_check,
    };
    py.allow_threads(|| crate::snapshot_file::restore(&path, &cfg))
        .map_err(|e| CoreError::new_err((2, e)))
}

fn bbolt_err(e: crate::bbolt::Error) -> PyErr {
    match e {
        crate::bbolt::Error::Io { .. } => PyOSError::new_err(e.to_string()),
        e => PyValueError::new_err(e.to_string()),
    }
}

/// The top-level bucket names of a bbolt file (an etcd db or snapshot).
#[pyfunction]
fn bbolt_buckets<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let names = py
        .allow_threads(|| crate::bbolt::Db::open(&path)?.buckets())
        .map_err(bbolt_err)?;
    Ok(names.iter().map(|n| PyBytes::new(py, n)).collect())
}

/// (key, value), the value None for a nested bucket.
type BboltEntry<'py> = (Bound<'py, PyBytes>, Option<Bound<'py, PyBytes>>);

/// A bucket's entries in key order, read page by page.
#[pyclass(module = "etcdcore._core")]
pub struct BboltItems {
    cursor: crate::bbolt::Cursor<crate::bbolt::FileSource>,
}

#[pymethods]
impl BboltItems {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// (key, value), or (name, None) for a nested bucket, as bbolt's ForEach.
    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<BboltEntry<'py>>> {
        let entry = self.cursor.next().map_err(bbolt_err)?;
        Ok(entry.map(|e| {
            let value = (!e.is_bucket()).then(|| PyBytes::new(py, e.value));
            (PyBytes::new(py, e.key), value)
        }))
    }
}

/// The entries of top-level bucket `bucket` of a bbolt file.
#[pyfunction]
fn bbolt_items(py: Python<'_>, path: PathBuf, bucket: Vec<u8>) -> PyResult<BboltItems> {
    let found = py
        .allow_threads(|| crate::bbolt::Db::open(&path)?.bucket(&bucket))
        .map_err(bbolt_err)?;
    let b = found.ok_or_else(|| {
        PyKeyError::new_err(format!("no bucket {:?}", String::from_utf8_lossy(&bucket)))
    })?;
    Ok(BboltItems { cursor: b.cursor() })
}

/// Writes `buckets` (name -> (key, value) pairs, any order) as a bbolt file,
/// with etcd's SHA-256 trailer when `sha256_trailer`; returns its size.
#[pyfunction]
#[pyo3(signature = (path, buckets, *, sha256_trailer=false))]
fn bbolt_write(
    py: Python<'_>,
    path: PathBuf,
    buckets: &Bound<'_, PyDict>,
    sha256_trailer: bool,
) -> PyResult<u64> {
    let mut src = crate::bbolt::InMemory::new();
    for (name, items) in buckets.iter() {
        let name = name.downcast::<PyBytes>()?.as_bytes();
        let bucket = src.bucket(name);
        for item in items.try_iter()? {
            let (k, v): (Bound<'_, PyBytes>, Bound<'_, PyBytes>) = item?.extract()?;
            if bucket
                .insert(k.as_bytes().to_vec(), v.as_bytes().to_vec())
                .is_some()
            {
                return Err(PyValueError::new_err(format!(
                    "bucket {:?}: key {:?} given twice",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(k.as_bytes())
                )));
            }
        }
    }
    py.allow_threads(|| crate::bbolt::write_file(&path, &mut src, sha256_trailer))
        .map_err(bbolt_err)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Debug and trace records are not forwarded to Python: the crates under
    // tonic log on every request at those levels, and each record would cost
    // a look-up of its Python logger (a few percent of a busy server's CPU).
    let _ = pyo3_log::Logger::default()
        .filter(log::LevelFilter::Info)
        .install();
    m.add("CoreError", m.py().get_type::<CoreError>())?;
    m.add_class::<CoreConfig>()?;
    m.add_class::<Core>()?;
    m.add_class::<TlsConfig>()?;
    m.add_class::<crate::python_jwt::JwtTokens>()?;
    m.add_class::<crate::python_gateway::Gateway>()?;
    m.add_function(wrap_pyfunction!(snapshot_status, m)?)?;
    m.add_function(wrap_pyfunction!(snapshot_restore, m)?)?;
    m.add_class::<BboltItems>()?;
    m.add_function(wrap_pyfunction!(bbolt_buckets, m)?)?;
    m.add_function(wrap_pyfunction!(bbolt_items, m)?)?;
    m.add_function(wrap_pyfunction!(bbolt_write, m)?)?;
    crate::python_grpcproxy::register(m)?;
    Ok(())
}
