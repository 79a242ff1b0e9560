//! The Watch service, served in Rust from the member's watch hub.
//!
//! Each call is two halves: a task reads the client's requests (create,
//! cancel, progress), checks them and hands them to the hub; the answer
//! stream sends what the hub queued for the stream, encoding each queued
//! entry when tonic asks for the next message, so a client that does not
//! read leaves its responses in the hub's bounded buffer, not in ours.
//! A client that half-closes keeps its watches (etcd does too); they go
//! when the call is over for it and tonic drops the answer stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use prost::Message;
use rand::Rng;
use tokio_stream::Stream;
use tonic::body::BoxBody;
use tonic::server::{Grpc, NamedService};
use tonic::{Request, Response, Status, Streaming};

use super::raw_codec::RawCodec;
use crate::auth::{policy, Caller};
use crate::pb::etcdserverpb::watch_request::RequestUnion;
use crate::pb::etcdserverpb::{WatchCreateRequest, WatchRequest};
use crate::raft_node::NodeHandle;
use crate::watch::{Out, StreamOut, WatchHub};

const METHOD: &str = "/etcdserverpb.Watch/Watch";

/// Control responses (created, canceled, progress) a stream may have
/// queued before its requests stop being read: a client that sends but
/// never reads holds no more than this (etcd's control channel blocks its
/// receive loop the same way).
const MAX_QUEUED_CONTROLS: usize = 1024;

pub struct WatchService {
    node: NodeHandle,
    max_decoding: usize,
}

impl WatchService {
    pub fn new(node: NodeHandle, max_decoding: usize) -> WatchService {
        WatchService { node, max_decoding }
    }
}

impl Clone for WatchService {
    fn clone(&self) -> Self {
        WatchService {
            node: self.node.clone(),
            max_decoding: self.max_decoding,
        }
    }
}

impl NamedService for WatchService {
    const NAME: &'static str = "etcdserverpb.Watch";
}

impl<B> tower::Service<http::Request<B>> for WatchService
where
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
        let node = self.node.clone();
        let mut grpc = Grpc::new(RawCodec)
            .apply_max_message_size_config(Some(self.max_decoding), Some(usize::MAX));
        Box::pin(async move {
            if req.uri().path() != METHOD {
                return Ok(Status::unimplemented("").into_http());
            }
            Ok(grpc.streaming(WatchCall { node }, req).await)
        })
    }
}

struct WatchCall {
    node: NodeHandle,
}

impl tower::Service<Request<Streaming<Bytes>>> for WatchCall {
    type Response = Response<Responses>;
    type Error = Status;
    type Future = std::future::Ready<Result<Response<Responses>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Streaming<Bytes>>) -> Self::Future {
        let caller = match policy::caller(&self.node.shared, &req) {
            Ok(c) => c,
            Err(e) => return std::future::ready(Err(e)),
        };
        let hub = self.node.watch.clone();
        let (stream, out) = hub.open_stream();
        tokio::spawn(read_requests(
            self.node.clone(),
            caller,
            stream,
            out.clone(),
            req.into_inner(),
        ));
        let interval = hub.settings().progress_interval;
        if !interval.is_zero() {
            tokio::spawn(tick_progress(hub.clone(), stream, out.clone(), interval));
        }
        std::future::ready(Ok(Response::new(Responses {
            hub,
            stream,
            out,
            fragments: VecDeque::new(),
        })))
    }
}

/// The client's requests, until it half-closes or its side breaks.
async fn read_requests(
    node: NodeHandle,
    caller: Caller,
    stream: u64,
    out: Arc<StreamOut>,
    mut inbound: Streaming<Bytes>,
) {
    let hub = &node.watch;
    while let Ok(Some(message)) = inbound.message().await {
        let req = match WatchRequest::decode(message) {
            Ok(r) => r,
            Err(e) => {
                // grpc-go's words for a stream message that does not decode.
                let text = e.to_string();
                let detail = text
                    .strip_prefix("failed to decode Protobuf message: ")
                    .unwrap_or(&text);
                out.end(Some(Status::internal(format!(
                    "grpc: failed to unmarshal the received message {detail}"
                ))));
                return;
            }
        };
        match req.request_union {
            Some(RequestUnion::CreateRequest(create)) => match permitted(&node, &caller, &create) {
                Ok(()) => hub.create(stream, &create),
                Err(e) => hub.refuse(&out, e.message()),
            },
            Some(RequestUnion::CancelRequest(cancel)) => hub.cancel(stream, cancel.watch_id),
            Some(RequestUnion::ProgressRequest(_)) => hub.progress_all(stream),
            None => {}
        }
        loop {
            let drained = out.drained.notified();
            if out.queued_controls() < MAX_QUEUED_CONTROLS || out.is_ended() {
                break;
            }
            drained.await;
        }
    }
}

fn permitted(
    node: &NodeHandle,
    caller: &Caller,
    create: &WatchCreateRequest,
) -> Result<(), Status> {
    if *caller == Caller::Anyone {
        return Ok(());
    }
    let sm = node.shared.sm.read().expect("state poisoned");
    policy::check_watch_create(&sm.auth, caller, create)
}

/// etcd's progress ticker: every interval plus up to a tenth of it (drawn
/// once per stream, so streams opened together do not tick together).
async fn tick_progress(hub: Arc<WatchHub>, stream: u64, out: Arc<StreamOut>, interval: Duration) {
    let jitter = rand::thread_rng().gen_range(0..=interval.as_nanos() as u64 / 10);
    let period = interval + Duration::from_nanos(jitter);
    loop {
        let closed = out.closed.notified();
        if out.is_ended() {
            return;
        }
        tokio::select! {
            _ = closed => return,
            _ = tokio::time::sleep(period) => {}
        }
        if !hub.progress_tick(stream) {
            return;
        }
    }
}

/// The answers of one Watch call, taken from the hub's buffer as tonic
/// sends them. Dropped when the call is over for the client: its watchers
/// go then.
pub struct Responses {
    hub: Arc<WatchHub>,
    stream: u64,
    out: Arc<StreamOut>,
    /// The rest of a fragmented response.
    fragments: VecDeque<Bytes>,
}

impl Stream for Responses {
    type Item = Result<Bytes, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(b) = this.fragments.pop_front() {
            return Poll::Ready(Some(Ok(b)));
        }
        let (item, room) = this.out.poll_take(cx, this.hub.low_water());
        if room {
            this.hub.wake_sync();
        }
        match item {
            Poll::Ready(Some(Ok(Out::Control(b)))) => Poll::Ready(Some(Ok(b))),
            Poll::Ready(Some(Ok(Out::Events(e)))) => {
                let mut resps: VecDeque<Bytes> = this.hub.responses(&e).into();
                let first = resps.pop_front();
                this.fragments = resps;
                Poll::Ready(first.map(Ok))
            }
            Poll::Ready(Some(Err(status))) => Poll::Ready(Some(Err(status))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Responses {
    fn drop(&mut self) {
        self.hub.close_stream(self.stream);
    }
}
