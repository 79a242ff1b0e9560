//! `etcdcore grpc-proxy start`: a stateless gRPC proxy in front of any etcd
//! v3 cluster, as etcd's `etcd grpc-proxy start` (server/proxy/grpcproxy).
//!
//! It serves the whole v3 API on one listener and is a client of the
//! cluster ([`upstream`]): KV with a cache of serializable reads ([`kv`],
//! [`cache`]), Watch with coalescing that folds every client watcher of a
//! range onto a few cluster watchers ([`watch`]), Lease with relayed
//! keep-alives ([`lease`]), Cluster answering MemberList with the proxies
//! ([`cluster`], [`register`]), Lock and Election ([`concurrency`]), and Auth
//! and Maintenance relayed untouched ([`passthrough`]). With a namespace
//! ([`namespace`]) every key is moved under a prefix and back. HTTP
//! (/metrics, /health and the proxy's own) shares the listener ([`http`]).
//!
//! Python parses the command line and calls [`Proxy::start`]; no Python
//! runs while the proxy serves.

pub mod cache;
pub mod cluster;
pub mod concurrency;
pub mod kv;
pub mod lease;
pub mod metrics;
pub mod namespace;
pub mod passthrough;
pub mod register;
pub mod tls;
pub mod upstream;
pub mod watch;
pub mod web;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::watch as signal;
use tokio_rustls::rustls::{ClientConfig, ServerConfig};
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tower::Layer;

use self::metrics::ProxyMetrics;
use self::namespace::Namespace;
use self::upstream::{deadline_of, Retry, Upstream};
use self::watch::hub::{Hub, HubStats};
use crate::pb::etcdserverpb::cluster_client::ClusterClient;
use crate::pb::etcdserverpb::cluster_server::ClusterServer;
use crate::pb::etcdserverpb::kv_server::KvServer;
use crate::pb::etcdserverpb::lease_server::LeaseServer;
use crate::pb::etcdserverpb::{request_op, MemberListRequest, TxnRequest};
use crate::pb::v3electionpb::election_server::ElectionServer;
use crate::pb::v3lockpb::lock_server::LockServer;
use crate::server::message_limit::MessageLimitLayer;

/// grpc-go's default receive limit, which etcd's proxy keeps for clients.
pub const MAX_CLIENT_MESSAGE: usize = 4 * 1024 * 1024;
/// How often the endpoints are refreshed from the cluster's member list.
pub const AUTO_SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// The proxy's settings (see `etcdcore grpc-proxy start --help`).
#[derive(Clone, Debug, Default)]
pub struct ProxyConfig {
    pub listen_addr: String,
    pub endpoints: Vec<String>,
    pub advertise_client_url: String,
    pub resolver_prefix: String,
    pub resolver_ttl: i64,
    pub namespace: Vec<u8>,
    /// --metrics-addr as a URL (http:// or https://), if given.
    pub metrics_addr: Option<String>,
    pub max_send_bytes: usize,
    pub max_recv_bytes: usize,
    pub dial_timeout: Duration,
    pub cluster_tls: tls::ClusterTls,
    /// The listener's certificate, key and trusted CA (empty: plaintext).
    pub listen_cert_file: String,
    pub listen_key_file: String,
    pub listen_trusted_ca_file: String,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub hostname: String,
    pub auto_sync_interval: Duration,
}

/// What every service of one proxy shares.
pub struct Shared {
    pub config: ProxyConfig,
    pub upstream: Arc<Upstream>,
    pub namespace: Namespace,
    pub metrics: ProxyMetrics,
    pub cluster_tls: Option<Arc<ClientConfig>>,
    hub: OnceLock<Weak<Hub>>,
}

impl Shared {
    pub fn hub_stats(&self) -> HubStats {
        self.hub
            .get()
            .and_then(Weak::upgrade)
            .map(|h| h.stats())
            .unwrap_or_default()
    }

    /// One unary call to the cluster with the client's token and deadline,
    /// moved to another member when it could not be delivered.
    pub async fn unary<Req, Resp, F, Fut>(
        &self,
        req: Request<Req>,
        retry: Retry,
        call: F,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Message + Clone,
        F: Fn(tonic::transport::Channel, Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
    {
        let (md, _, msg) = req.into_parts();
        self.upstream.check_send(msg.encoded_len())?;
        let deadline = deadline_of(&md);
        let resp = self
            .upstream
            .call(deadline, retry, |ch| {
                call(ch, upstream::outgoing(msg.clone(), &md, deadline))
            })
            .await?;
        Ok(Response::new(resp.into_inner()))
    }
}

/// Whether a txn only reads (so it may be sent again after a failure).
pub fn txn_is_read_only(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(t.failure.iter())
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(_)) => true,
            Some(request_op::Request::RequestTxn(t)) => txn_is_read_only(t),
            _ => false,
        })
}

/// A running proxy.
pub struct Proxy {
    runtime: tokio::runtime::Runtime,
    shutdown: signal::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    hub: Arc<Hub>,
    pub local_addr: SocketAddr,
}

/// Binds `addr`, failing in Go's words (`listen tcp ADDR: bind: address
/// already in use`), as etcd's proxy reports it.
async fn bind(addr: &str) -> Result<tokio::net::TcpListener, String> {
    use std::io::ErrorKind;
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let why = match e.kind() {
            ErrorKind::AddrInUse => "address already in use".to_string(),
            ErrorKind::AddrNotAvailable => "cannot assign requested address".to_string(),
            ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        format!("listen tcp {addr}: bind: {why}")
    })
}

impl Proxy {
    /// Connects (lazily) to the cluster, binds the listeners and serves.
    pub fn start(config: ProxyConfig) -> Result<Proxy, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("grpc-proxy")
            .build()
            .map_err(|e| e.to_string())?;
        let cluster_tls = if config.cluster_tls.enabled() {
            Some(tls::cluster_client_config(&config.cluster_tls)?)
        } else {
            None
        };
        let listen_tls = if config.listen_cert_file.is_empty() {
            None
        } else {
            Some(tls::listener_config(
                &config.listen_cert_file,
                &config.listen_key_file,
                &config.listen_trusted_ca_file,
            )?)
        };
        let upstream = {
            let _guard = runtime.enter();
            Upstream::new(
                &config.endpoints,
                cluster_tls.clone(),
                config.dial_timeout,
                config.max_send_bytes,
                config.max_recv_bytes,
            )?
        };
        let shared = Arc::new(Shared {
            namespace: Namespace::new(&config.namespace),
            config,
            upstream,
            metrics: ProxyMetrics::default(),
            cluster_tls,
            hub: OnceLock::new(),
        });
        let (shutdown, rx) = signal::channel(false);
        let (hub, tasks, local_addr) = runtime.block_on(serve(shared.clone(), listen_tls, rx))?;
        Ok(Proxy {
            runtime,
            shutdown,
            tasks,
            hub,
            local_addr,
        })
    }

    /// Cluster watchers open, client watchers on them.
    pub fn stats(&self) -> HubStats {
        self.hub.stats()
    }

    /// Whether a listener stopped on its own (waits up to `timeout`).
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.tasks.iter().any(|t| t.is_finished()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(timeout));
        }
    }

    pub fn stop(self) {
        let _ = self.shutdown.send(true);
        let Proxy { runtime, tasks, .. } = self;
        runtime.block_on(async {
            for t in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

async fn serve(
    shared: Arc<Shared>,
    listen_tls: Option<Arc<ServerConfig>>,
    shutdown: signal::Receiver<bool>,
) -> Result<(Arc<Hub>, Vec<tokio::task::JoinHandle<()>>, SocketAddr), String> {
    let cfg = &shared.config;
    let listener = bind(&cfg.listen_addr).await?;
    let local_addr = listener.local_addr().map_err(|e| e.to_string())?;
    let metrics_listener = match &cfg.metrics_addr {
        Some(url) => {
            let (scheme, hostport) = url.split_once("://").unwrap_or(("http", url));
            Some((bind(hostport).await?, scheme == "https"))
        }
        None => None,
    };
    let hub = Hub::new(shared.clone());
    let _ = shared.hub.set(Arc::downgrade(&hub));
    let limit = MessageLimitLayer {
        max: MAX_CLIENT_MESSAGE,
    };
    let tls_on = listen_tls.is_some();
    let mut builder = Server::builder()
        .max_concurrent_streams(u32::MAX)
        .accept_http1(true)
        .tcp_nodelay(true);
    if !cfg.keepalive_interval.is_zero() {
        builder = builder.http2_keepalive_interval(Some(cfg.keepalive_interval));
    }
    if !cfg.keepalive_timeout.is_zero() {
        builder = builder.http2_keepalive_timeout(Some(cfg.keepalive_timeout));
    }
    let router = builder
        .layer(web::HttpLayer {
            shared: shared.clone(),
            tls: tls_on,
        })
        .add_service(
            limit.layer(
                KvServer::new(kv::KvProxy::new(shared.clone()))
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX),
            ),
        )
        .add_service(limit.layer(watch::WatchService::new(hub.clone())))
        .add_service(
            limit.layer(
                LeaseServer::new(lease::LeaseProxy::new(shared.clone()))
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX),
            ),
        )
        .add_service(
            limit.layer(
                ClusterServer::new(cluster::ClusterProxy::new(shared.clone()))
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX),
            ),
        )
        .add_service(
            limit.layer(passthrough::Passthrough::<passthrough::Maintenance>::new(
                shared.upstream.clone(),
            )),
        )
        .add_service(
            limit.layer(passthrough::Passthrough::<passthrough::Auth>::new(
                shared.upstream.clone(),
            )),
        )
        .add_service(
            limit.layer(
                LockServer::new(concurrency::LockProxy::new(shared.clone()))
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX),
            ),
        )
        .add_service(
            limit.layer(
                ElectionServer::new(concurrency::ElectionProxy::new(shared.clone()))
                    .max_decoding_message_size(usize::MAX)
                    .max_encoding_message_size(usize::MAX),
            ),
        );
    let mut tasks = vec![crate::server::spawn_router(
        router,
        listener,
        listen_tls.clone(),
        shutdown.clone(),
        "grpc-proxy",
    )
    .map_err(|e| e.to_string())?];
    if let Some((l, https)) = metrics_listener {
        let tls = if https { listen_tls.clone() } else { None };
        tasks.push(spawn_metrics(shared.clone(), l, tls, shutdown.clone()));
    }
    if !cfg.resolver_prefix.is_empty() && cfg.resolver_ttl > 0 {
        let s = shared.clone();
        tokio::spawn(register::run(s));
    }
    if !cfg.auto_sync_interval.is_zero() {
        tokio::spawn(auto_sync(shared.clone()));
    }
    log::info!(
        "listening for gRPC proxy client requests: address={}",
        cfg.listen_addr
    );
    Ok((hub, tasks, local_addr))
}

/// The metrics listener: HTTP/1 only.
fn spawn_metrics(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<ServerConfig>>,
    mut shutdown: signal::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    use hyper_util::rt::TokioIo;
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => return,
            };
            let Ok((tcp, _)) = accepted else { continue };
            let shared = shared.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let https = tls.is_some();
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move {
                            let req = req.map(|b| {
                                use http_body_util::BodyExt;
                                tonic::body::boxed(b.map_err(|e| Status::internal(e.to_string())))
                            });
                            Ok::<_, std::convert::Infallible>(web::handle(shared, req, https).await)
                        }
                    });
                let builder = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(cfg) => {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await
                        else {
                            return;
                        };
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                }
            });
        }
    })
}

/// Refreshes the endpoints from the cluster's member list (clientv3's
/// auto-sync): the configured endpoints stay, members' client URLs join.
async fn auto_sync(shared: Arc<Shared>) {
    let configured = shared.config.endpoints.clone();
    let mut tick = tokio::time::interval(shared.config.auto_sync_interval);
    loop {
        tick.tick().await;
        let r = shared
            .unary(
                Request::new(MemberListRequest {
                    linearizable: false,
                }),
                Retry::Safe,
                |ch, req| async move { ClusterClient::new(ch).member_list(req).await },
            )
            .await;
        let Ok(resp) = r else { continue };
        let mut urls = configured.clone();
        for m in &resp.get_ref().members {
            for u in &m.client_ur_ls {
                urls.push(u.clone());
            }
        }
        shared.upstream.set_urls(&urls);
    }
}
