//! The client-facing gRPC server (tonic): KV in Rust, every other service
//! bridged to Python. One runtime, one listener per --listen-client-urls entry.

mod bridged;
pub mod grpc_metrics;
pub mod kv;
mod raw_codec;
mod validate;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;
use tonic::transport::server::Router;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use crate::bridge::Bridge;
use crate::pb::etcdserverpb::kv_server::KvServer;
use crate::raft_node::NodeHandle;
use bridged::Bridged;
use grpc_metrics::Metered;
pub use kv::Limits;

/// gRPC framing on top of --max-request-bytes, as etcd allows.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Binds `addr` now, so start-up fails loudly on a taken port.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("listen tcp {addr}: bind: {e}")))
}

/// Serves `router` on `listener` (TLS first when `tls` is given) until
/// `shutdown` flips to true.
pub(crate) fn spawn_router(
    router: Router,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let signal = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    if let Some(config) = tls {
        let incoming = crate::tls::incoming(listener, config);
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
        .map_err(|e| std::io::Error::other(format!("listener: {e}")))?;
    Ok(tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
            log::error!("{what} server stopped: {e}");
        }
    }))
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
/// serves them on the current runtime until `shutdown` flips to true.
pub async fn serve(
    addrs: Vec<SocketAddr>,
    node: NodeHandle,
    bridge: Arc<Bridge>,
    limits: Limits,
    tls: Option<Arc<ServerConfig>>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut listeners = Vec::new();
    for addr in addrs {
        listeners.push(bind(addr).await?);
    }
    let max_decoding = limits.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let mut tasks = Vec::new();
    for l in listeners {
        let kv = KvServer::new(kv::KvService::new(node.clone(), limits))
            .max_decoding_message_size(max_decoding)
            .max_encoding_message_size(usize::MAX);
        let router = Server::builder()
            .add_service(Metered::new(kv, &node.config.metrics))
            .add_service(metered_bridged::<bridged::Watch>(
                bridge.clone(),
                node.clone(),
                max_decoding,
            ))
            .add_service(metered_bridged::<bridged::Lease>(
                bridge.clone(),
                node.clone(),
                max_decoding,
            ))
            .add_service(metered_bridged::<bridged::Cluster>(
                bridge.clone(),
                node.clone(),
                max_decoding,
            ))
            .add_service(metered_bridged::<bridged::Maintenance>(
                bridge.clone(),
                node.clone(),
                max_decoding,
            ))
            .add_service(metered_bridged::<bridged::Auth>(
                bridge.clone(),
                node.clone(),
                max_decoding,
            ))
            .add_service(metered_bridged::<bridged::Lock>(
                bridge.clone(),
                node.clone(),
                max_decoding,
            ))
            .add_service(metered_bridged::<bridged::Election>(
                bridge.clone(),
                node.clone(),
                max_decoding,
            ));
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
