//! gRPC services answered by Python: every method of a bridged service is
//! forwarded over the bridge as raw bytes. One generic service type serves
//! Cluster, Maintenance, Auth, Lock and Election; the method's path alone
//! says whether it streams.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::body::BoxBody;
use tonic::server::{Grpc, NamedService};
use tonic::{Request, Response, Status, Streaming};

use super::raw_codec::RawCodec;
use crate::auth::{policy, Caller};
use crate::bridge::{Bridge, Item};
use crate::raft_node::NodeHandle;

/// How much earlier than tonic's own deadline timer a bridged call is ended.
const DEADLINE_MARGIN: Duration = Duration::from_millis(5);

/// Whether one client message on a bridged stream may go to Python.
fn admit(node: &NodeHandle, caller: &Caller, method: &str, message: &[u8]) -> Result<(), Status> {
    if *caller == Caller::Anyone {
        return Ok(());
    }
    let sm = node.shared.sm.read().expect("state poisoned");
    policy::check_bridged(&sm.auth, caller, method, message)
}

/// Methods whose calls stream (both ways on the wire; a server-streaming
/// call is a stream whose client sends one message).
const STREAMING: &[&str] = &["/v3electionpb.Election/Observe"];

/// A gRPC service name served over the bridge.
pub trait ServiceName: Send + Sync + 'static {
    const NAME: &'static str;
}

macro_rules! service_names {
    ($($ty:ident => $name:literal),* $(,)?) => {
        $(
            pub struct $ty;
            impl ServiceName for $ty {
                const NAME: &'static str = $name;
            }
        )*
    };
}

service_names! {
    Cluster => "etcdserverpb.Cluster",
    Maintenance => "etcdserverpb.Maintenance",
    Auth => "etcdserverpb.Auth",
    Lock => "v3lockpb.Lock",
    Election => "v3electionpb.Election",
}

pub struct Bridged<S> {
    bridge: Arc<Bridge>,
    /// For the auth checks made before a call is forwarded.
    node: NodeHandle,
    max_decoding: usize,
    _name: PhantomData<S>,
}

impl<S> Clone for Bridged<S> {
    fn clone(&self) -> Self {
        Bridged {
            bridge: self.bridge.clone(),
            node: self.node.clone(),
            max_decoding: self.max_decoding,
            _name: PhantomData,
        }
    }
}

impl<S: ServiceName> Bridged<S> {
    pub fn new(bridge: Arc<Bridge>, node: NodeHandle, max_decoding: usize) -> Self {
        Bridged {
            bridge,
            node,
            max_decoding,
            _name: PhantomData,
        }
    }
}

impl<S: ServiceName> NamedService for Bridged<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Bridged<S>
where
    S: ServiceName,
    B: Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_string();
        let bridge = self.bridge.clone();
        let node = self.node.clone();
        let mut grpc = Grpc::new(RawCodec)
            .apply_max_message_size_config(Some(self.max_decoding), Some(usize::MAX));
        Box::pin(async move {
            let resp = if method == super::snapshot::METHOD {
                grpc.streaming(super::snapshot::SnapshotCall { node }, req)
                    .await
            } else if STREAMING.contains(&method.as_str()) {
                grpc.streaming(
                    StreamCall {
                        bridge,
                        node,
                        method,
                    },
                    req,
                )
                .await
            } else {
                let deadline = grpc_timeout(req.headers());
                grpc.unary(
                    UnaryCall {
                        bridge,
                        node,
                        method,
                        deadline,
                    },
                    req,
                )
                .await
            };
            Ok(resp)
        })
    }
}

struct UnaryCall {
    bridge: Arc<Bridge>,
    node: NodeHandle,
    method: String,
    /// The client's deadline (grpc-timeout), if it sent one.
    deadline: Option<Duration>,
}

/// The `grpc-timeout` header: digits and a unit (H, M, S, m, u, n).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl tower::Service<Request<Bytes>> for UnaryCall {
    type Response = Response<Bytes>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Bytes>, Status>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let bridge = self.bridge.clone();
        let method = std::mem::take(&mut self.method);
        let deadline = self.deadline;
        let allowed = policy::caller(&self.node.shared, &req).and_then(|caller| {
            let sm = self.node.shared.sm.read().expect("state poisoned");
            policy::check_bridged(&sm.auth, &caller, &method, req.get_ref())
        });
        Box::pin(async move {
            allowed?;
            let call = bridge.call_unary(&method, req.into_inner());
            // A call past the client's deadline ends as it does in etcd (the
            // handler's context expires: DEADLINE_EXCEEDED), a little before
            // tonic's own timer would cancel it with "Timeout expired".
            let reply = match deadline {
                Some(d) => tokio::time::timeout(d.saturating_sub(DEADLINE_MARGIN), call)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Status::deadline_exceeded("context deadline exceeded"))
                    })?,
                None => call.await?,
            };
            Ok(Response::new(reply))
        })
    }
}

struct StreamCall {
    bridge: Arc<Bridge>,
    node: NodeHandle,
    method: String,
}

/// The answers of one bridged stream, as tonic sends them. tonic drops it when
/// the call is over for the client (cancelled, connection gone, or all
/// answers sent), and Python then hears "close": the one sure sign a watch
/// may be released, since a client that merely half-closed still listens.
pub struct Outbound {
    answers: mpsc::UnboundedReceiver<Result<Bytes, Status>>,
    bridge: Arc<Bridge>,
    call_id: u64,
}

impl Stream for Outbound {
    type Item = Result<Bytes, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.answers.poll_recv(cx)
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        self.bridge.stream_gone(self.call_id);
    }
}

impl tower::Service<Request<Streaming<Bytes>>> for StreamCall {
    type Response = Response<Outbound>;
    type Error = Status;
    type Future = std::future::Ready<Result<Response<Outbound>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Streaming<Bytes>>) -> Self::Future {
        let caller = match policy::caller(&self.node.shared, &req) {
            Ok(c) => c,
            Err(e) => return std::future::ready(Err(e)),
        };
        let (call_id, answers) = self.bridge.open_stream(&self.method);
        let bridge = self.bridge.clone();
        let node = self.node.clone();
        let method = self.method.clone();
        let mut inbound = req.into_inner();
        tokio::spawn(async move {
            // Client messages flow to Python until the client half-closes or
            // its side of the stream breaks (reset, connection lost).
            let end = loop {
                match inbound.message().await {
                    Ok(Some(message)) => match admit(&node, &caller, &method, &message) {
                        Ok(()) => bridge.push(Item::Msg { call_id, message }),
                        Err(e) => {
                            bridge.stream_end(call_id, e.code() as i32, e.message().to_string());
                            break Item::Close { call_id };
                        }
                    },
                    Ok(None) => break Item::HalfClose { call_id },
                    Err(_) => break Item::Close { call_id },
                }
            };
            bridge.push(end);
        });
        let outbound = Outbound {
            answers,
            bridge: self.bridge.clone(),
            call_id,
        };
        std::future::ready(Ok(Response::new(outbound)))
    }
}
