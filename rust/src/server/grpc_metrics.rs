//! go-grpc-prometheus's server counters (`grpc_server_started_total`,
//! `grpc_server_handled_total`, `grpc_server_msg_received_total`,
//! `grpc_server_msg_sent_total`), counted for every client-facing service,
//! KV included, by one wrapper around each service ([`Metered`]).
//!
//! The wrapper works on the HTTP/2 exchange, so it sees every call however
//! it is answered (in Rust, by Python over the bridge, or refused before
//! either): the method is the request path, messages are counted from the
//! gRPC length-prefixed framing of the bodies, and the code is the
//! `grpc-status` of the trailers (or of the headers of a trailers-only
//! answer). A call the client abandons before its status counts as
//! Canceled, as grpc-go reports it. Counting costs a few atomic adds per
//! call.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use super::grpc_frames::FrameScanner;
use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tonic::body::BoxBody;
use tonic::server::NamedService;
use tonic::Status;

/// go-grpc-prometheus's grpc_type label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcType {
    Unary,
    ServerStream,
    BidiStream,
}

impl GrpcType {
    pub fn label(self) -> &'static str {
        match self {
            GrpcType::Unary => "unary",
            GrpcType::ServerStream => "server_stream",
            GrpcType::BidiStream => "bidi_stream",
        }
    }
}

use GrpcType::{BidiStream, ServerStream, Unary};

/// (service, method, type, whether etcd's series start at zero). etcd
/// registers the metrics after its own six services and before Lock and
/// Election, so only those six are pre-initialised there; the other two
/// appear once called.
const METHODS: &[(&str, &str, GrpcType, bool)] = &[
    ("etcdserverpb.KV", "Range", Unary, true),
    ("etcdserverpb.KV", "Put", Unary, true),
    ("etcdserverpb.KV", "DeleteRange", Unary, true),
    ("etcdserverpb.KV", "Txn", Unary, true),
    ("etcdserverpb.KV", "Compact", Unary, true),
    ("etcdserverpb.Watch", "Watch", BidiStream, true),
    ("etcdserverpb.Lease", "LeaseGrant", Unary, true),
    ("etcdserverpb.Lease", "LeaseRevoke", Unary, true),
    ("etcdserverpb.Lease", "LeaseKeepAlive", BidiStream, true),
    ("etcdserverpb.Lease", "LeaseTimeToLive", Unary, true),
    ("etcdserverpb.Lease", "LeaseLeases", Unary, true),
    ("etcdserverpb.Cluster", "MemberAdd", Unary, true),
    ("etcdserverpb.Cluster", "MemberRemove", Unary, true),
    ("etcdserverpb.Cluster", "MemberUpdate", Unary, true),
    ("etcdserverpb.Cluster", "MemberList", Unary, true),
    ("etcdserverpb.Cluster", "MemberPromote", Unary, true),
    ("etcdserverpb.Maintenance", "Alarm", Unary, true),
    ("etcdserverpb.Maintenance", "Status", Unary, true),
    ("etcdserverpb.Maintenance", "Defragment", Unary, true),
    ("etcdserverpb.Maintenance", "Hash", Unary, true),
    ("etcdserverpb.Maintenance", "HashKV", Unary, true),
    ("etcdserverpb.Maintenance", "Snapshot", ServerStream, true),
    ("etcdserverpb.Maintenance", "MoveLeader", Unary, true),
    ("etcdserverpb.Maintenance", "Downgrade", Unary, true),
    ("etcdserverpb.Auth", "AuthEnable", Unary, true),
    ("etcdserverpb.Auth", "AuthDisable", Unary, true),
    ("etcdserverpb.Auth", "AuthStatus", Unary, true),
    ("etcdserverpb.Auth", "Authenticate", Unary, true),
    ("etcdserverpb.Auth", "UserAdd", Unary, true),
    ("etcdserverpb.Auth", "UserGet", Unary, true),
    ("etcdserverpb.Auth", "UserList", Unary, true),
    ("etcdserverpb.Auth", "UserDelete", Unary, true),
    ("etcdserverpb.Auth", "UserChangePassword", Unary, true),
    ("etcdserverpb.Auth", "UserGrantRole", Unary, true),
    ("etcdserverpb.Auth", "UserRevokeRole", Unary, true),
    ("etcdserverpb.Auth", "RoleAdd", Unary, true),
    ("etcdserverpb.Auth", "RoleGet", Unary, true),
    ("etcdserverpb.Auth", "RoleList", Unary, true),
    ("etcdserverpb.Auth", "RoleDelete", Unary, true),
    ("etcdserverpb.Auth", "RoleGrantPermission", Unary, true),
    ("etcdserverpb.Auth", "RoleRevokePermission", Unary, true),
    ("v3lockpb.Lock", "Lock", Unary, false),
    ("v3lockpb.Lock", "Unlock", Unary, false),
    ("v3electionpb.Election", "Campaign", Unary, false),
    ("v3electionpb.Election", "Proclaim", Unary, false),
    ("v3electionpb.Election", "Leader", Unary, false),
    ("v3electionpb.Election", "Observe", ServerStream, false),
    ("v3electionpb.Election", "Resign", Unary, false),
];

/// gRPC status codes 0 (OK) to 16 (Unauthenticated).
pub const CODES: usize = 17;
const UNKNOWN: usize = 2;
const CANCELED: usize = 1;

/// The index in [`METHODS`] of a request path ("/service/method").
fn method_index(path: &str) -> Option<usize> {
    static INDEX: OnceLock<HashMap<String, usize>> = OnceLock::new();
    INDEX
        .get_or_init(|| {
            METHODS
                .iter()
                .enumerate()
                .map(|(i, (service, method, _, _))| (format!("/{service}/{method}"), i))
                .collect()
        })
        .get(path)
        .copied()
}

#[derive(Default)]
struct MethodCounters {
    started: AtomicU64,
    msg_received: AtomicU64,
    msg_sent: AtomicU64,
    handled: [AtomicU64; CODES],
}

/// One member's counters, one set per method of [`METHODS`].
pub struct GrpcCounters {
    methods: Vec<MethodCounters>,
}

impl Default for GrpcCounters {
    fn default() -> Self {
        GrpcCounters {
            methods: METHODS.iter().map(|_| MethodCounters::default()).collect(),
        }
    }
}

/// One method's counters at scrape time.
#[derive(Clone, Debug)]
pub struct GrpcMethodSnapshot {
    pub grpc_type: &'static str,
    pub service: &'static str,
    pub method: &'static str,
    /// Whether etcd shows this method's series before it is first called.
    pub preinitialized: bool,
    pub started: u64,
    pub msg_received: u64,
    pub msg_sent: u64,
    /// Handled calls by status code (0..=16).
    pub handled: [u64; CODES],
}

impl GrpcCounters {
    /// Every method etcd shows now: the pre-initialised ones, and any other
    /// once called.
    pub fn snapshot(&self) -> Vec<GrpcMethodSnapshot> {
        METHODS
            .iter()
            .zip(&self.methods)
            .filter_map(|(&(service, method, kind, pre), c)| {
                let started = c.started.load(Ordering::Relaxed);
                if !pre && started == 0 {
                    return None;
                }
                Some(GrpcMethodSnapshot {
                    grpc_type: kind.label(),
                    service,
                    method,
                    preinitialized: pre,
                    started,
                    msg_received: c.msg_received.load(Ordering::Relaxed),
                    msg_sent: c.msg_sent.load(Ordering::Relaxed),
                    handled: std::array::from_fn(|i| c.handled[i].load(Ordering::Relaxed)),
                })
            })
            .collect()
    }
}

/// One counted method of one member.
#[derive(Clone)]
struct MethodRef {
    metrics: Arc<crate::metrics::Metrics>,
    index: usize,
}

impl MethodRef {
    fn get(&self) -> &MethodCounters {
        &self.metrics.grpc.methods[self.index]
    }
}

/// A call in progress: counts its end exactly once, as Canceled if it is
/// dropped before a status was seen or the client reset a stream first
/// (the client went away: grpc-go's handler would see its context end).
struct Call {
    method: MethodRef,
    finished: bool,
    /// Set by the request body of a streaming call when the client resets
    /// it; a service that then ends the stream normally still counts it
    /// as Canceled. Unary calls need none: their request is read whole
    /// before they are answered, and a reset drops the call.
    client_reset: Option<Arc<AtomicBool>>,
}

impl Call {
    fn finish(&mut self, code: usize) {
        if !self.finished {
            self.finished = true;
            let reset = self
                .client_reset
                .as_ref()
                .is_some_and(|r| r.load(Ordering::Relaxed));
            let code = match code {
                _ if reset => CANCELED,
                c if c < CODES => c,
                _ => UNKNOWN,
            };
            self.method.get().handled[code].fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(CANCELED);
    }
}

fn status_code(headers: &http::HeaderMap) -> Option<usize> {
    let v = headers.get("grpc-status")?;
    Some(
        std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(UNKNOWN),
    )
}

/// A request body that counts the messages the client sends on a stream.
pub struct CountedRequest {
    inner: BoxBody,
    method: Option<MethodRef>,
    messages: FrameScanner,
    client_reset: Option<Arc<AtomicBool>>,
}

impl Body for CountedRequest {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match (&polled, &this.method) {
            (Poll::Ready(Some(Ok(frame))), Some(m)) => {
                if let Some(data) = frame.data_ref() {
                    let n = this.messages.count(data.chunk());
                    if n > 0 {
                        m.get().msg_received.fetch_add(n, Ordering::Relaxed);
                    }
                }
            }
            // Only the connection fails a request body: a reset stream.
            (Poll::Ready(Some(Err(_))), _) => {
                if let Some(r) = &this.client_reset {
                    r.store(true, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts the messages sent and the final status.
struct CountedResponse {
    inner: BoxBody,
    call: Call,
    messages: FrameScanner,
}

impl Body for CountedResponse {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let n = this.messages.count(data.chunk());
                if n > 0 {
                    this.call
                        .method
                        .get()
                        .msg_sent
                        .fetch_add(n, Ordering::Relaxed);
                }
            } else if let Some(code) = frame.trailers_ref().and_then(status_code) {
                this.call.finish(code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client-facing gRPC service with its calls counted.
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Arc<crate::metrics::Metrics>,
}

impl<S> Metered<S> {
    pub fn new(inner: S, metrics: &Arc<crate::metrics::Metrics>) -> Self {
        Metered {
            inner,
            metrics: metrics.clone(),
        }
    }
}

impl<S: NamedService> NamedService for Metered<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<BoxBody>> for Metered<S>
where
    S: tower::Service<
        http::Request<CountedRequest>,
        Response = http::Response<BoxBody>,
        Error = Infallible,
    >,
    S::Future: Unpin,
{
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<BoxBody>) -> Self::Future {
        // Paths no service has are answered Unimplemented by tonic and, as
        // in grpc-go, never reach the counters.
        let index = method_index(req.uri().path());
        let method = index.map(|index| MethodRef {
            metrics: self.metrics.clone(),
            index,
        });
        let streaming = index.is_some_and(|i| METHODS[i].2 != Unary);
        if let Some(m) = &method {
            let counters = m.get();
            counters.started.fetch_add(1, Ordering::Relaxed);
            if !streaming {
                // A unary call has its one request message, as
                // go-grpc-prometheus counts it: no need to read the framing.
                counters.msg_received.fetch_add(1, Ordering::Relaxed);
            }
        }
        let client_reset = streaming.then(|| Arc::new(AtomicBool::new(false)));
        let req_method = if streaming { method.clone() } else { None };
        let call = method.map(|method| Call {
            method,
            finished: false,
            client_reset: client_reset.clone(),
        });
        let req = req.map(|inner| CountedRequest {
            inner,
            method: req_method,
            messages: FrameScanner::default(),
            client_reset,
        });
        MeteredFuture {
            inner: self.inner.call(req),
            call,
        }
    }
}

/// The service's answer, its body wrapped to count what it sends.
pub struct MeteredFuture<F> {
    inner: F,
    call: Option<Call>,
}

impl<F> Future for MeteredFuture<F>
where
    F: Future<Output = Result<http::Response<BoxBody>, Infallible>> + Unpin,
{
    type Output = Result<http::Response<BoxBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Ok(resp) = std::task::ready!(Pin::new(&mut this.inner).poll(cx));
        let Some(mut call) = this.call.take() else {
            return Poll::Ready(Ok(resp));
        };
        if let Some(code) = status_code(resp.headers()) {
            // Trailers-only: the status came with the headers, no messages.
            call.finish(code);
            return Poll::Ready(Ok(resp));
        }
        Poll::Ready(Ok(resp.map(|inner| {
            tonic::body::boxed(CountedResponse {
                inner,
                call,
                messages: FrameScanner::default(),
            })
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_path_is_found() {
        for (i, (service, method, _, _)) in METHODS.iter().enumerate() {
            assert_eq!(method_index(&format!("/{service}/{method}")), Some(i));
        }
        assert_eq!(method_index("/etcdserverpb.KV/Nope"), None);
    }
}
