//! The client-facing gRPC server (tonic): KV, Watch and Lease in Rust, every other
//! service bridged to Python. One runtime, one listener per --listen-client-urls entry;
//! etcd's HTTP endpoints share them through `http_forward`.

mod authority;
mod bridged;
mod coalesced_writes;
pub mod grpc_codec;
mod grpc_frames;
pub mod grpc_metrics;
mod http_forward;
pub mod kv;
pub mod lease;
pub(crate) mod message_limit;
pub(crate) mod raw_codec;
mod snapshot;
pub(crate) mod validate;
mod watch_service;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;
use tokio_stream::StreamExt;
use tonic::body::BoxBody;
use tonic::service::Routes;
use tonic::transport::server::Router;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tower::{Layer, Service};

use crate::bridge::Bridge;
use crate::pb::etcdserverpb::kv_server::KvServer;
use crate::pb::etcdserverpb::lease_server::LeaseServer;
use crate::raft_node::NodeHandle;
use crate::transport::Transport;
use authority::AuthorityFix;
use bridged::Bridged;
use coalesced_writes::CoalescedWrites;
use grpc_metrics::Metered;
use http_forward::HttpForwardLayer;
pub use kv::Limits;
use message_limit::MessageLimitLayer;

/// gRPC framing on top of --max-request-bytes, as etcd allows.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Binds `addr` now, so start-up fails loudly on a taken port.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("listen tcp {addr}: bind: {e}")))
}

/// Serves `router` on `listener` (TLS first when `tls` is given) until
/// `shutdown` flips to true.
pub(crate) fn spawn_router<L, ResBody>(
    router: Router<L>,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
) -> std::io::Result<tokio::task::JoinHandle<()>>
where
    L: Layer<Routes> + Send + 'static,
    L::Service: Service<Request<BoxBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    <L::Service as Service<Request<BoxBody>>>::Future: Send + 'static,
    <L::Service as Service<Request<BoxBody>>>::Error: Into<BoxError> + Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let signal = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    if let Some(config) = tls {
        let incoming = crate::tls::incoming(listener, config).map(|c| c.map(wrap_connection));
        return Ok(tokio::spawn(async move {
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
                log::error!("{what} server stopped: {e}");
            }
        }));
    }
    // TCP_NODELAY must be set on each accepted socket here: the builder's
    // tcp_nodelay only applies to listeners tonic binds itself, and Nagle
    // plus delayed ACKs costs small responses 40 ms.
    let incoming = TcpIncoming::from_listener(listener, true, None)
        .map_err(|e| std::io::Error::other(format!("listener: {e}")))?
        .map(|c| c.map(wrap_connection));
    Ok(tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
            log::error!("{what} server stopped: {e}");
        }
    }))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What every accepted client connection goes through before hyper.
fn wrap_connection<IO>(io: IO) -> CoalescedWrites<AuthorityFix<IO>> {
    CoalescedWrites::new(AuthorityFix::new(io))
}

/// A bridged service, its calls counted for /metrics.
fn metered_bridged<S: bridged::ServiceName>(
    bridge: Arc<Bridge>,
    node: NodeHandle,
    max_decoding: usize,
) -> Metered<Bridged<S>> {
    let metrics = node.config.metrics.clone();
    Metered::new(Bridged::new(bridge, node, max_decoding), &metrics)
}

/// Binds every address now (so start-up fails loudly on a taken port) and
/// serves them on the current runtime until `shutdown` flips to true. With
/// `http_gateway` (the HTTP application's unix socket), requests other than
/// gRPC are forwarded there, as etcd multiplexes its HTTP endpoints.
/// `transport` reaches the leader for the lease calls only it answers.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    addrs: Vec<SocketAddr>,
    node: NodeHandle,
    transport: Option<Arc<Transport>>,
    bridge: Arc<Bridge>,
    limits: Limits,
    tls: Option<Arc<ServerConfig>>,
    http_gateway: Option<PathBuf>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut listeners = Vec::new();
    for addr in addrs {
        listeners.push(bind(addr).await?);
    }
    let http_gateway = http_gateway.map(Arc::new);
    let multiplex = http_gateway.is_some();
    let tls = match &tls {
        Some(config) if multiplex => Some(http_forward::offer_http1(config)),
        _ => tls,
    };
    let max_decoding = limits.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let mut tasks = Vec::new();
    for l in listeners {
        let kv = KvServer::new(kv::KvService::new(node.clone(), limits))
            .max_decoding_message_size(max_decoding)
            .max_encoding_message_size(usize::MAX);
        let lease = LeaseServer::new(lease::LeaseService::new(node.clone(), transport.clone()))
            .max_decoding_message_size(max_decoding)
            .max_encoding_message_size(usize::MAX);
        // Every client message is held to grpc-go's limit, in its words.
        let limit = MessageLimitLayer { max: max_decoding };
        // Advertised as etcd does, u32::MAX ("no limit") by default.
        let router = Server::builder()
            .max_concurrent_streams(limits.max_concurrent_streams)
            .accept_http1(multiplex)
            .layer(HttpForwardLayer::new(http_gateway.clone(), tls.is_some()))
            .add_service(limit.layer(Metered::new(kv, &node.config.metrics)))
            .add_service(limit.layer(Metered::new(
                watch_service::WatchService::new(node.clone(), max_decoding),
                &node.config.metrics,
            )))
            .add_service(limit.layer(Metered::new(lease, &node.config.metrics)))
            .add_service(limit.layer(metered_bridged::<bridged::Cluster>(
                bridge.clone(),
                node.clone(),
                max_decoding,
            )))
            .add_service(limit.layer(metered_bridged::<bridged::Maintenance>(
                bridge.clone(),
                node.clone(),
                max_decoding,
            )))
            .add_service(limit.layer(metered_bridged::<bridged::Auth>(
                bridge.clone(),
                node.clone(),
                max_decoding,
            )))
            .add_service(limit.layer(metered_bridged::<bridged::Lock>(
                bridge.clone(),
                node.clone(),
                max_decoding,
            )))
            .add_service(limit.layer(metered_bridged::<bridged::Election>(
                bridge.clone(),
                node.clone(),
                max_decoding,
            )));
        tasks.push(spawn_router(
            router,
            l,
            tls.clone(),
            shutdown.clone(),
            "grpc",
        )?);
    }
    Ok(tasks)
}
