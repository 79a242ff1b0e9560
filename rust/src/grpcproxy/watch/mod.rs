//! The Watch service through the proxy: each client stream's requests are
//! read in order (create, cancel, progress), its watchers placed in the
//! coalescing hub ([`hub`]), and its responses — built from pre-encoded
//! pieces ([`encode`]) — written as they are queued. Watchers share the
//! cluster's watchers through [`upstream`].
//!
//! Requests are checked as etcd's watch server checks them (same refusals,
//! same texts); a client with a token is checked for read permission on the
//! range first, as etcd's proxy does, since it may join a watcher the
//! cluster made for someone else.

pub mod encode;
pub mod hub;
pub mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{Request as HttpRequest, Response as HttpResponse};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::body::BoxBody;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::server::{Grpc, NamedService};
use tonic::{Request, Response, Status, Streaming};

use self::hub::{ClientStream, Hub, Out, Watcher, WatcherSpec};
use super::upstream::{outgoing, Retry};
use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::pb::etcdserverpb::watch_request::RequestUnion;
use crate::pb::etcdserverpb::{RangeRequest, WatchCreateRequest, WatchRequest};
use crate::server::raw_codec::RawEncoder;

const ERR_COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const ERR_EMPTY_RANGE: &str = "mvcc: watcher range is empty";
const ERR_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// Requests decoded with prost (grpc-go's words when they do not decode),
/// responses written as the bytes the hub built.
#[derive(Clone, Copy, Default)]
struct WatchCodec;

struct RequestDecoder;

impl Codec for WatchCodec {
    type Encode = Bytes;
    type Decode = WatchRequest;
    type Encoder = RawEncoder;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RequestDecoder {
        RequestDecoder
    }
}

impl Decoder for RequestDecoder {
    type Item = WatchRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<WatchRequest>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        WatchRequest::decode(bytes).map(Some).map_err(|e| {
            let text = e.to_string();
            let detail = text
                .strip_prefix("failed to decode Protobuf message: ")
                .unwrap_or(&text)
                .to_string();
            Status::internal(format!("grpc: error unmarshalling request: {detail}"))
        })
    }
}

/// The Watch service.
#[derive(Clone)]
pub struct WatchService {
    hub: Arc<Hub>,
}

impl WatchService {
    pub fn new(hub: Arc<Hub>) -> WatchService {
        WatchService { hub }
    }
}

impl NamedService for WatchService {
    const NAME: &'static str = "etcdserverpb.Watch";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<HttpRequest<BoxBody>> for WatchService {
    type Response = HttpResponse<BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<HttpResponse<BoxBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HttpRequest<BoxBody>) -> Self::Future {
        let hub = self.hub.clone();
        Box::pin(async move {
            if req.uri().path() != "/etcdserverpb.Watch/Watch" {
                return Ok(Status::unimplemented("").into_http());
            }
            let mut grpc = Grpc::new(WatchCodec);
            Ok(grpc.streaming(Handler { hub }, req).await)
        })
    }
}

struct Handler {
    hub: Arc<Hub>,
}

impl tower::Service<Request<Streaming<WatchRequest>>> for Handler {
    type Response = Response<OutStream>;
    type Error = Status;
    type Future = BoxFuture<Result<Response<OutStream>, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Streaming<WatchRequest>>) -> Self::Future {
        let hub = self.hub.clone();
        Box::pin(async move {
            let (md, _, incoming) = req.into_parts();
            let (stream, rx) = ClientStream::new(md);
            tokio::spawn(read_requests(hub.clone(), stream.clone(), incoming));
            Ok(Response::new(OutStream {
                rx,
                ready: std::collections::VecDeque::new(),
                stream,
                hub,
            }))
        })
    }
}

/// The responses of one client stream. Dropped when the call ends for the
/// client (closed, cancelled, gone): its watchers go with it.
pub struct OutStream {
    rx: mpsc::UnboundedReceiver<Out>,
    /// Responses built from one watcher's merged events, not yet yielded.
    ready: std::collections::VecDeque<Bytes>,
    stream: Arc<ClientStream>,
    hub: Arc<Hub>,
}

impl OutStream {
    /// Accounts for `len` bytes leaving the queue; resumes paused watchers
    /// once the stream has drained enough.
    fn sent(&self, len: usize) {
        if self.stream.sent(len) {
            let hub = self.hub.clone();
            let stream = self.stream.clone();
            tokio::spawn(async move { hub.resume(&stream) });
        }
    }
}

impl Stream for OutStream {
    type Item = Result<Bytes, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(b)));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Out::Control(b))) => {
                    self.sent(b.len());
                    return Poll::Ready(Some(Ok(b)));
                }
                Poll::Ready(Some(Out::Events(w))) => {
                    let (responses, counted) = w.drain();
                    self.ready.extend(responses);
                    self.sent(counted);
                }
                // The sender lives in the stream itself: never closed here.
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for OutStream {
    fn drop(&mut self) {
        let watchers: Vec<Arc<Watcher>> = self
            .stream
            .watchers
            .lock()
            .unwrap()
            .drain()
            .map(|(_, w)| w)
            .collect();
        let lagging = self.stream.take_lagging();
        for w in watchers.iter().chain(lagging.iter()) {
            self.hub.remove(w);
        }
    }
}

/// Reads one client's requests, in order, until it closes its side (its
/// watchers keep going, as on etcd) or the call ends.
async fn read_requests(
    hub: Arc<Hub>,
    stream: Arc<ClientStream>,
    mut incoming: Streaming<WatchRequest>,
) {
    while let Some(Ok(req)) = incoming.next().await {
        if stream.is_closed() {
            return;
        }
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => create(&hub, &stream, c).await,
            Some(RequestUnion::CancelRequest(c)) => {
                let w = stream.watchers.lock().unwrap().remove(&c.watch_id);
                if let Some(w) = w {
                    hub.remove(&w);
                    hub.cancelled(&stream, c.watch_id);
                }
            }
            Some(RequestUnion::ProgressRequest(_)) => hub.progress(&stream),
            None => {}
        }
    }
}

async fn create(hub: &Arc<Hub>, stream: &Arc<ClientStream>, c: WatchCreateRequest) {
    // etcd's watch server: an empty key is "\0"; "\0" as the end means
    // every key from the key on.
    let key = if c.key.is_empty() { vec![0] } else { c.key };
    let end = c.range_end;
    if c.start_revision < 0 {
        hub.refuse(stream, ERR_COMPACTED);
        return;
    }
    if !end.is_empty() && end != [0] && key >= end {
        hub.refuse(stream, ERR_EMPTY_RANGE);
        return;
    }
    let ns = &hub.shared.namespace;
    let range = (ns.key(&key), ns.range_end(&end));
    if stream.md.get("token").is_some() {
        if let Err(s) = check_permission(hub, stream, &range).await {
            hub.refuse(stream, s.message());
            return;
        }
    }
    let w = {
        let mut watchers = stream.watchers.lock().unwrap();
        let id = if c.watch_id == 0 {
            let mut next = stream.next_id.lock().unwrap();
            while watchers.contains_key(&*next) {
                *next += 1;
            }
            let id = *next;
            *next += 1;
            id
        } else if watchers.contains_key(&c.watch_id) {
            drop(watchers);
            hub.refuse(stream, ERR_DUPLICATE_ID);
            return;
        } else {
            c.watch_id
        };
        let spec = WatcherSpec {
            id,
            range,
            start: c.start_revision,
            no_put: c.filters.contains(&0),
            no_delete: c.filters.contains(&1),
            prev_kv: c.prev_kv,
            progress_notify: c.progress_notify,
            fragment: c.fragment,
        };
        let w = Watcher::new(stream, spec);
        watchers.insert(id, w.clone());
        w
    };
    hub.join(&w, w.start, false);
    // The next request waits for this one's created response.
    while !w.is_announced() {
        let wait = w.announce.notified();
        if w.is_announced() || stream.is_closed() {
            break;
        }
        tokio::select! {
            _ = wait => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
        if stream.is_closed() {
            return;
        }
    }
}

/// etcd's proxy check that a client may read the range it watches: a
/// serializable count of it, with the client's token.
async fn check_permission(
    hub: &Arc<Hub>,
    stream: &Arc<ClientStream>,
    range: &hub::Range,
) -> Result<(), Status> {
    let req = RangeRequest {
        key: range.0.clone(),
        range_end: range.1.clone(),
        serializable: true,
        count_only: true,
        limit: 1,
        ..Default::default()
    };
    let md = stream.md.clone();
    hub.shared
        .upstream
        .call(None, Retry::Safe, |ch| {
            let r = outgoing(req.clone(), &md, None);
            async move { KvClient::new(ch).range(r).await }
        })
        .await
        .map(|_| ())
}
