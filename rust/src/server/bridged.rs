//! gRPC services answered by Python: every method of a bridged service is
//! forwarded over the bridge as raw bytes. One generic service type serves
//! Watch, Lease, Cluster, Maintenance, Auth, Lock and Election; the method's
//! path alone says whether it streams.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Body;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::body::BoxBody;
use tonic::server::{Grpc, NamedService};
use tonic::{Request, Response, Status, Streaming};

use super::raw_codec::RawCodec;
use crate::bridge::{Bridge, Item};

/// Methods whose calls stream (both ways on the wire; a server-streaming
/// call is a stream whose client sends one message).
const STREAMING: &[&str] = &[
    "/etcdserverpb.Watch/Watch",
    "/etcdserverpb.Lease/LeaseKeepAlive",
    "/etcdserverpb.Maintenance/Snapshot",
    "/v3electionpb.Election/Observe",
];

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
    Watch => "etcdserverpb.Watch",
    Lease => "etcdserverpb.Lease",
    Cluster => "etcdserverpb.Cluster",
    Maintenance => "etcdserverpb.Maintenance",
    Auth => "etcdserverpb.Auth",
    Lock => "v3lockpb.Lock",
    Election => "v3electionpb.Election",
}

pub struct Bridged<S> {
    bridge: Arc<Bridge>,
    max_decoding: usize,
    _name: PhantomData<S>,
}

impl<S> Clone for Bridged<S> {
    fn clone(&self) -> Self {
        Bridged {
            bridge: self.bridge.clone(),
            max_decoding: self.max_decoding,
            _name: PhantomData,
        }
    }
}

impl<S: ServiceName> Bridged<S> {
    pub fn new(bridge: Arc<Bridge>, max_decoding: usize) -> Self {
        Bridged {
            bridge,
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
        let mut grpc = Grpc::new(RawCodec)
            .apply_max_message_size_config(Some(self.max_decoding), Some(usize::MAX));
        Box::pin(async move {
            let resp = if STREAMING.contains(&method.as_str()) {
                grpc.streaming(StreamCall { bridge, method }, req).await
            } else {
                grpc.unary(UnaryCall { bridge, method }, req).await
            };
            Ok(resp)
        })
    }
}

struct UnaryCall {
    bridge: Arc<Bridge>,
    method: String,
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
        Box::pin(async move {
            let reply = bridge.call_unary(&method, req.into_inner()).await?;
            Ok(Response::new(reply))
        })
    }
}

struct StreamCall {
    bridge: Arc<Bridge>,
    method: String,
}

type Outbound = UnboundedReceiverStream<Result<Bytes, Status>>;

impl tower::Service<Request<Streaming<Bytes>>> for StreamCall {
    type Response = Response<Outbound>;
    type Error = Status;
    type Future = std::future::Ready<Result<Response<Outbound>, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Streaming<Bytes>>) -> Self::Future {
        let (call_id, outbound) = self.bridge.open_stream(&self.method);
        let bridge = self.bridge.clone();
        let mut inbound = req.into_inner();
        tokio::spawn(async move {
            // Client messages flow to Python until the client half-closes or
            // goes away; either way Python hears "close" exactly once.
            while let Ok(Some(message)) = inbound.message().await {
                bridge.push(Item::Msg { call_id, message });
            }
            bridge.push(Item::Close { call_id });
        });
        std::future::ready(Ok(Response::new(UnboundedReceiverStream::new(outbound))))
    }
}
