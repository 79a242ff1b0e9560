//! The proxy's HTTP endpoints, on its listener (requests that are not gRPC)
//! and on --metrics-addr, as etcd's proxy serves them:
//! - `/metrics`: the cluster's metrics, fetched from the first endpoint;
//! - `/health`: whether the cluster answers a read (a permission refusal
//!   counts as an answer);
//! - `/proxy/metrics`: the proxy's own metrics;
//! - `/proxy/health`: whether a read and a watch work through the proxy;
//! - anything else: Go's "404 page not found".

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use tonic::body::BoxBody;
use tonic::Status;
use tower::util::Either;
use tower::{Layer, Service};

use super::upstream::Retry;
use super::Shared;
use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::pb::etcdserverpb::watch_client::WatchClient;
use crate::pb::etcdserverpb::watch_request::RequestUnion;
use crate::pb::etcdserverpb::{RangeRequest, WatchCreateRequest, WatchRequest};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type HttpFuture = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, Infallible>> + Send>>;

fn body(b: impl Into<Bytes>) -> BoxBody {
    tonic::body::boxed(
        Full::new(b.into()).map_err(|never: Infallible| -> Status { match never {} }),
    )
}

fn text(status: StatusCode, content_type: &'static str, b: impl Into<Bytes>) -> Response<BoxBody> {
    let mut r = Response::new(body(b));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Go's http.Error: the text, a newline, no sniffing.
fn go_error(status: StatusCode, msg: &str) -> Response<BoxBody> {
    let mut r = text(status, "text/plain; charset=utf-8", format!("{msg}\n"));
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Serves one HTTP request.
pub async fn handle(shared: Arc<Shared>, req: Request<BoxBody>, tls: bool) -> Response<BoxBody> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    drop(req);
    match path.as_str() {
        "/metrics" => cluster_metrics(&shared, tls).await,
        "/health" => health(&method, check_health(&shared).await),
        "/proxy/metrics" => {
            let stats = shared.hub_stats();
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                shared.metrics.render(stats),
            )
        }
        "/proxy/health" => {
            let h = if shared.config.advertise_client_url.is_empty() {
                Err("no connection to proxy".to_string())
            } else {
                match check_health(&shared).await {
                    Ok(()) => check_watch(&shared).await,
                    e => e,
                }
            };
            health(&method, h)
        }
        _ => go_error(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

fn health(method: &Method, h: Result<(), String>) -> Response<BoxBody> {
    if method != Method::GET {
        let mut r = go_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    match h {
        Ok(()) => text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            r#"{"health":"true","reason":""}"#,
        ),
        Err(reason) => {
            let d = serde_json::json!({"health": "false", "reason": reason});
            go_error(StatusCode::SERVICE_UNAVAILABLE, &d.to_string())
        }
    }
}

/// A read of "a" within a second (etcd's proxy health check).
async fn check_health(shared: &Shared) -> Result<(), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let r = shared
        .upstream
        .call(Some(deadline), Retry::Safe, |ch| {
            let mut req = tonic::Request::new(RangeRequest {
                key: b"a".to_vec(),
                ..Default::default()
            });
            req.set_timeout(Duration::from_secs(1));
            async move { KvClient::new(ch).range(req).await }
        })
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::PermissionDenied => Ok(()),
        Err(s) => Err(format!("GET ERROR:{}", s.message())),
    }
}

/// A watch on "a" created within three seconds.
async fn check_watch(shared: &Shared) -> Result<(), String> {
    let conn = shared.upstream.pick();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let _ = tx
        .send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: shared.namespace.key(b"a"),
                ..Default::default()
            })),
        })
        .await;
    let attempt = async {
        let mut answers = WatchClient::new(conn.channel.clone())
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        match answers.message().await {
            Ok(Some(r)) if r.created => Ok(()),
            _ => Err("WATCH TIMEOUT".to_string()),
        }
    };
    match tokio::time::timeout(Duration::from_secs(3), attempt).await {
        Ok(r) => r.map_err(|_| "WATCH TIMEOUT".to_string()),
        Err(_) => Err("WATCH TIMEOUT".to_string()),
    }
}

/// The first endpoint's /metrics, passed on.
async fn cluster_metrics(shared: &Shared, tls: bool) -> Response<BoxBody> {
    let url = shared
        .upstream
        .urls()
        .into_iter()
        .next()
        .unwrap_or_default();
    match fetch_metrics(shared, &url, tls).await {
        Ok(b) => text(StatusCode::OK, "text/plain; version=0.0.4", b),
        Err(e) => {
            log::warn!("fetching {url}/metrics: {e}");
            go_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        }
    }
}

async fn fetch_metrics(shared: &Shared, url: &str, tls: bool) -> Result<Bytes, BoxError> {
    let (scheme, hostport) = match url.split_once("://") {
        Some((s, rest)) => (s.to_string(), rest.trim_end_matches('/').to_string()),
        None => (
            if tls { "https" } else { "http" }.to_string(),
            url.to_string(),
        ),
    };
    let tls_cfg = if scheme == "https" {
        let base = shared
            .cluster_tls
            .clone()
            .unwrap_or_else(super::tls::default_client_config);
        let mut cfg = tokio_rustls::rustls::ClientConfig::clone(&base);
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(Arc::new(cfg))
    } else {
        None
    };
    let uri: http::Uri = format!("http://{hostport}/metrics").parse()?;
    let io = tokio::time::timeout(
        Duration::from_secs(5),
        super::upstream::dial(uri.clone(), tls_cfg),
    )
    .await??;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::builder()
        .uri("/metrics")
        .header(header::HOST, hostport)
        .body(http_body_util::Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    Ok(resp.into_body().collect().await?.to_bytes())
}

/// Sends gRPC requests on to tonic's routes, the rest to [`handle`].
#[derive(Clone)]
pub struct HttpLayer {
    pub shared: Arc<Shared>,
    pub tls: bool,
}

impl<S> Layer<S> for HttpLayer {
    type Service = HttpRoutes<S>;

    fn layer(&self, inner: S) -> HttpRoutes<S> {
        HttpRoutes {
            inner,
            shared: self.shared.clone(),
            tls: self.tls,
        }
    }
}

#[derive(Clone)]
pub struct HttpRoutes<S> {
    inner: S,
    shared: Arc<Shared>,
    tls: bool,
}

/// Whether a request is gRPC's, by etcd's rules: over plaintext every
/// HTTP/2 request; under TLS an HTTP/2 one whose content-type says gRPC.
fn is_grpc<B>(req: &Request<B>, tls: bool) -> bool {
    if req.version() != Version::HTTP_2 {
        return false;
    }
    if !tls {
        return true;
    }
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

impl<S> Service<Request<BoxBody>> for HttpRoutes<S>
where
    S: Service<Request<BoxBody>, Response = Response<BoxBody>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<BoxBody>;
    type Error = BoxError;
    type Future = Either<
        Pin<Box<dyn Future<Output = Result<Response<BoxBody>, BoxError>> + Send>>,
        HttpFuture,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<BoxBody>) -> Self::Future {
        if is_grpc(&req, self.tls) {
            let fut = self.inner.call(req);
            return Either::A(Box::pin(async move { fut.await.map_err(Into::into) }));
        }
        let shared = self.shared.clone();
        let tls = self.tls;
        Either::B(Box::pin(async move { Ok(handle(shared, req, tls).await) }))
    }
}
