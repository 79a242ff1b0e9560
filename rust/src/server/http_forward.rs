//! etcd's HTTP endpoints on the gRPC client listeners, as etcd 3.5 serves
//! them without --listen-client-http-urls: the `/v3/...` JSON gateway,
//! `/health`, `/version`, `/metrics` and the rest share the port with gRPC.
//!
//! gRPC stays here, in Rust, untouched; every other request is forwarded,
//! bodies streamed both ways, to the Python HTTP application, which listens
//! on a private unix socket only this process knows. Which requests are
//! gRPC follows etcd's `serve.go`:
//! - plaintext: etcd splits connections with cmux, so every HTTP/2
//!   connection is gRPC's and every HTTP/1.x one the HTTP mux's;
//! - TLS: etcd routes each request, so an HTTP/2 request is gRPC's only when
//!   its content-type contains `application/grpc` (curl over https
//!   negotiates h2 by ALPN and must still reach the HTTP mux).

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::time::Instant;
use tokio_rustls::rustls::ServerConfig;
use tonic::body::BoxBody;
use tower::util::Either;
use tower::{Layer, Service};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ForwardFuture = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, Infallible>> + Send>>;

/// Where the HTTP application listens, and how one listener tells its
/// requests apart.
#[derive(Clone, Debug)]
pub struct HttpForwardLayer {
    /// The unix socket of the HTTP application; `None`: serve gRPC only
    /// (--listen-client-http-urls given), every request goes to tonic.
    gateway: Option<Arc<PathBuf>>,
    tls: bool,
}

impl HttpForwardLayer {
    pub fn new(gateway: Option<Arc<PathBuf>>, tls: bool) -> HttpForwardLayer {
        HttpForwardLayer { gateway, tls }
    }
}

impl<S> Layer<S> for HttpForwardLayer {
    type Service = HttpForward<S>;

    fn layer(&self, inner: S) -> HttpForward<S> {
        HttpForward {
            inner,
            gateway: self.gateway.clone(),
            tls: self.tls,
        }
    }
}

/// Sends gRPC requests to `inner` (tonic's routes) and the rest to the HTTP
/// application.
#[derive(Clone, Debug)]
pub struct HttpForward<S> {
    inner: S,
    gateway: Option<Arc<PathBuf>>,
    tls: bool,
}

impl<S> Service<Request<BoxBody>> for HttpForward<S>
where
    S: Service<Request<BoxBody>, Response = Response<BoxBody>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<BoxBody>;
    type Error = BoxError;
    type Future = Either<S::Future, ForwardFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<BoxBody>) -> Self::Future {
        match &self.gateway {
            Some(gateway) if !is_grpc(&req, self.tls) => {
                Either::B(Box::pin(forward(gateway.clone(), req)))
            }
            _ => Either::A(self.inner.call(req)),
        }
    }
}

/// Whether a request on this listener belongs to gRPC (see the module doc).
fn is_grpc<B>(req: &Request<B>, tls: bool) -> bool {
    if req.version() != Version::HTTP_2 {
        return false;
    }
    if !tls {
        return true;
    }
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| contains(ct.as_bytes(), b"application/grpc"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Adds HTTP/1.1 to the protocols a TLS listener offers by ALPN, after h2:
/// rustls refuses clients whose ALPN list has no common protocol, where
/// Go's TLS stack lets `http/1.1`-only clients (curl --http1.1, wget) in.
pub fn offer_http1(config: &Arc<ServerConfig>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::clone(config);
    if !config.alpn_protocols.iter().any(|p| p == b"http/1.1") {
        config.alpn_protocols.push(b"http/1.1".to_vec());
    }
    Arc::new(config)
}

async fn forward(
    gateway: Arc<PathBuf>,
    req: Request<BoxBody>,
) -> Result<Response<BoxBody>, Infallible> {
    match exchange(&gateway, req).await {
        Ok(resp) => Ok(resp),
        Err(e) => {
            log::warn!("HTTP gateway at {} did not answer: {e}", gateway.display());
            Ok(unavailable())
        }
    }
}

/// One request over a fresh connection to the HTTP application: gateway
/// traffic is light, and a long watch would hold a pooled one anyway.
async fn exchange(gateway: &PathBuf, req: Request<BoxBody>) -> Result<Response<BoxBody>, BoxError> {
    let stream = connect(gateway).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends with the response body (or when the client goes away and
        // hyper drops it), closing the connection to the application.
        if let Err(e) = conn.await {
            log::debug!("HTTP gateway connection: {e}");
        }
    });
    let resp = sender.send_request(to_gateway(req)).await?;
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, tonic::body::boxed(body)))
}

/// How long a request waits for the HTTP application to listen: the member
/// answers gRPC a moment before Python's HTTP side is up, and a client that
/// saw gRPC answer (or a health check right after start) must not get a 503.
const GATEWAY_START_WAIT: Duration = Duration::from_secs(10);

async fn connect(gateway: &PathBuf) -> std::io::Result<UnixStream> {
    let deadline = Instant::now() + GATEWAY_START_WAIT;
    loop {
        match UnixStream::connect(gateway).await {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            result => return result,
        }
    }
}

/// The request as HTTP/1.1 in origin form, keeping method, path, query,
/// headers (Authorization among them) and body; hop-by-hop headers are the
/// client connection's own, and HTTP/2 carries the host as :authority.
fn to_gateway(req: Request<BoxBody>) -> Request<BoxBody> {
    let (mut parts, body) = req.into_parts();
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    parts.uri = parts
        .uri
        .path_and_query()
        .cloned()
        .map(Uri::from)
        .unwrap_or_else(|| Uri::from_static("/"));
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(header::HOST) {
        if let Some(value) = authority.and_then(|a| HeaderValue::from_str(&a).ok()) {
            parts.headers.insert(header::HOST, value);
        }
    }
    Request::from_parts(parts, body)
}

/// Connection-level headers: they describe one hop (and HTTP/2 forbids them).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    const HOP: [HeaderName; 5] = [
        header::CONNECTION,
        header::TE,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
    ];
    for name in &HOP {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// The answer when the HTTP application is not (yet, or any more) there.
fn unavailable() -> Response<BoxBody> {
    let body = Full::new(Bytes::from_static(b"etcdcore: HTTP gateway unavailable\n"))
        .map_err(|never: Infallible| -> tonic::Status { match never {} });
    let mut resp = Response::new(tonic::body::boxed(body));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, content_type: Option<&str>) -> Request<()> {
        let mut b = Request::builder()
            .version(version)
            .uri("/etcdserverpb.KV/Put");
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn plaintext_routes_by_protocol_like_cmux() {
        assert!(is_grpc(&request(Version::HTTP_2, None), false));
        assert!(!is_grpc(
            &request(Version::HTTP_11, Some("application/grpc")),
            false
        ));
    }

    #[test]
    fn tls_routes_http2_by_content_type() {
        assert!(is_grpc(
            &request(Version::HTTP_2, Some("application/grpc")),
            true
        ));
        assert!(is_grpc(
            &request(Version::HTTP_2, Some("application/grpc+proto")),
            true
        ));
        assert!(!is_grpc(
            &request(Version::HTTP_2, Some("application/json")),
            true
        ));
        assert!(!is_grpc(&request(Version::HTTP_2, None), true));
        assert!(!is_grpc(
            &request(Version::HTTP_11, Some("application/grpc")),
            true
        ));
    }

    #[test]
    fn forwarded_request_is_origin_form_http11_with_host() {
        let req = Request::builder()
            .version(Version::HTTP_2)
            .uri("https://127.0.0.1:2379/v3/kv/range?x=1")
            .header(header::AUTHORIZATION, "tok")
            .header(header::TE, "trailers")
            .body(tonic::body::empty_body())
            .unwrap();
        let out = to_gateway(req);
        assert_eq!(out.uri(), "/v3/kv/range?x=1");
        assert_eq!(out.version(), Version::HTTP_11);
        assert_eq!(out.headers()[header::HOST], "127.0.0.1:2379");
        assert_eq!(out.headers()[header::AUTHORIZATION], "tok");
        assert!(!out.headers().contains_key(header::TE));
    }
}
