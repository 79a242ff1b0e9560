//! Services the proxy relays without looking inside: Auth and Maintenance
//! (etcd's proxy forwards them as they are). The client's
//! gRPC request — headers (its token, its deadline) and message bytes — is
//! sent as it came to one member, and the member's response, trailers and
//! status included, streams back untouched (Maintenance.Snapshot too).
//!
//! The request message is read first (one message: these calls are unary
//! or server-streaming), so a call that could not reach a member can be
//! sent again to another; what may be re-sent after reaching one follows
//! [`Retry`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tonic::body::BoxBody;
use tonic::server::NamedService;
use tonic::Status;
use tower::{Service, ServiceExt};

use super::upstream::{ConnectError, Retry, Upstream};

/// The service a [`Passthrough`] stands for.
pub trait Relayed: Send + Sync + 'static {
    const NAME: &'static str;
    /// Whether a method may be sent again after it may have reached a member.
    fn retry(method: &str) -> Retry;
}

pub struct Auth;
impl Relayed for Auth {
    const NAME: &'static str = "etcdserverpb.Auth";
    fn retry(method: &str) -> Retry {
        match method {
            "AuthStatus" | "UserGet" | "UserList" | "RoleGet" | "RoleList" => Retry::Safe,
            _ => Retry::Unsafe,
        }
    }
}

pub struct Maintenance;
impl Relayed for Maintenance {
    const NAME: &'static str = "etcdserverpb.Maintenance";
    fn retry(method: &str) -> Retry {
        match method {
            "Status" | "Hash" | "HashKV" | "Snapshot" => Retry::Safe,
            _ => Retry::Unsafe,
        }
    }
}

pub struct Passthrough<R> {
    upstream: Arc<Upstream>,
    _r: std::marker::PhantomData<fn() -> R>,
}

impl<R> Clone for Passthrough<R> {
    fn clone(&self) -> Self {
        Passthrough {
            upstream: self.upstream.clone(),
            _r: std::marker::PhantomData,
        }
    }
}

impl<R: Relayed> Passthrough<R> {
    pub fn new(upstream: Arc<Upstream>) -> Passthrough<R> {
        Passthrough {
            upstream,
            _r: std::marker::PhantomData,
        }
    }
}

impl<R: Relayed> NamedService for Passthrough<R> {
    const NAME: &'static str = R::NAME;
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, Infallible>> + Send>>;

impl<R: Relayed> Service<Request<BoxBody>> for Passthrough<R> {
    type Response = Response<BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BoxBody>) -> BoxFuture {
        let up = self.upstream.clone();
        Box::pin(async move {
            let method = req
                .uri()
                .path()
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            let retry = R::retry(&method);
            Ok(relay(&up, req, retry)
                .await
                .unwrap_or_else(|s| s.into_http()))
        })
    }
}

/// Sends one buffered gRPC request to the cluster and hands back its
/// response; the error is what the client should see instead.
pub async fn relay(
    up: &Upstream,
    req: Request<BoxBody>,
    retry: Retry,
) -> Result<Response<BoxBody>, Status> {
    let (parts, body) = req.into_parts();
    let deadline = super::upstream::deadline_of(&tonic::metadata::MetadataMap::from_headers(
        parts.headers.clone(),
    ))
    .unwrap_or_else(|| Instant::now() + up.dial_timeout);
    let data: Bytes = body.collect().await?.to_bytes();
    if data.len() >= 5 {
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        up.check_send(len)?;
    }
    let mut failures = 0usize;
    loop {
        let conn = up.pick();
        let mut out = Request::builder()
            .method(parts.method.clone())
            .uri(parts.uri.clone())
            .version(http::Version::HTTP_2)
            .body(tonic::body::boxed(
                Full::new(data.clone()).map_err(|never: Infallible| -> Status { match never {} }),
            ))
            .expect("request parts are valid");
        *out.headers_mut() = parts.headers.clone();
        let mut channel = conn.channel.clone();
        let result = match channel.ready().await {
            Ok(ch) => ch.call(out).await,
            Err(e) => Err(e),
        };
        let err = match result {
            Ok(resp) => {
                up.mark_up(&conn);
                return Ok(resp);
            }
            Err(e) => e,
        };
        up.mark_down(&conn);
        let not_sent = never_sent(&err);
        if !(not_sent || retry == Retry::Safe) || Instant::now() >= deadline {
            return Err(Status::unavailable(format!(
                "connection error: desc = \"transport: {}\"",
                chain(&err)
            )));
        }
        failures += 1;
        if failures.is_multiple_of(up.urls().len().max(1)) {
            let pause = std::time::Duration::from_millis(100)
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
        }
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s = format!("{s}: {x}");
        src = x.source();
    }
    s
}

/// Whether a transport error means the request never reached a member.
fn never_sent(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut err: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = err {
        if x.downcast_ref::<ConnectError>().is_some() {
            return true;
        }
        if let Some(h) = x.downcast_ref::<hyper::Error>() {
            return h.is_canceled();
        }
        err = x.source();
    }
    false
}
