//! The proxy's side of the cluster: one lazily connected HTTP/2 channel per
//! cluster endpoint, calls spread over them round robin, and a call that
//! could not reach a member moved to the next one.
//!
//! Endpoints are spelled as clientv3 takes them: `host:port` (TLS when the
//! proxy has TLS settings for the cluster), `http://` (never TLS) or
//! `https://` (always TLS). Which failures may be retried follows clientv3's
//! retry interceptor: a call that never left the proxy (the connection could
//! not be made) is retried on another member whatever it does; a call that
//! may have reached a member is retried only when it changes nothing
//! (`Retry::Safe`). Errors the cluster answers pass through untouched.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{lookup_host, TcpStream};
use tokio_rustls::rustls::{pki_types, ClientConfig};
use tokio_rustls::TlsConnector;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};

/// How long a member that refused a connection is passed over.
const DOWN_FOR: Duration = Duration::from_secs(1);
/// Pause between attempts when every member failed in a row.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Which failed calls may be sent again (clientv3's retry policies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Reads: any transport failure.
    Safe,
    /// Writes: only a failure before the request left the proxy.
    Unsafe,
}

/// Metadata keys a client's call carries on to the cluster: the auth token
/// and clientv3's require-leader mark.
const FORWARDED_METADATA: &[&str] = &["token", "hasleader"];

/// One cluster endpoint.
pub struct Conn {
    /// As configured or discovered (`host:port` or with a scheme).
    pub url: String,
    pub channel: Channel,
    down_until: Mutex<Option<Instant>>,
}

impl Conn {
    fn is_down(&self, now: Instant) -> bool {
        matches!(*self.down_until.lock().unwrap(), Some(t) if t > now)
    }
}

/// The endpoints and how to reach them.
pub struct Upstream {
    conns: RwLock<Vec<Arc<Conn>>>,
    next: AtomicUsize,
    tls: Option<Arc<ClientConfig>>,
    pub dial_timeout: Duration,
    /// The largest message sent to the cluster (--max-send-bytes).
    pub max_send: usize,
    /// The largest message accepted from it (--max-recv-bytes).
    pub max_recv: usize,
}

impl Upstream {
    pub fn new(
        urls: &[String],
        tls: Option<Arc<ClientConfig>>,
        dial_timeout: Duration,
        max_send: usize,
        max_recv: usize,
    ) -> Result<Arc<Upstream>, String> {
        let up = Upstream {
            conns: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
            tls,
            dial_timeout,
            max_send,
            max_recv,
        };
        let mut conns = Vec::new();
        for url in urls {
            conns.push(Arc::new(up.connect(url)?));
        }
        if conns.is_empty() {
            return Err("no endpoints given".into());
        }
        *up.conns.write().unwrap() = conns;
        Ok(Arc::new(up))
    }

    /// A lazily connected channel to `url`.
    fn connect(&self, url: &str) -> Result<Conn, String> {
        let (hostport, tls) = match url.split_once("://") {
            Some(("http", rest)) => (rest, None),
            Some(("https", rest)) => match &self.tls {
                Some(cfg) => (rest, Some(cfg.clone())),
                None => (rest, Some(crate::grpcproxy::tls::default_client_config())),
            },
            Some((scheme, _)) => return Err(format!("unsupported endpoint scheme {scheme:?}")),
            None => (url, self.tls.clone()),
        };
        let hostport = hostport.trim_end_matches('/');
        // TLS is done by `dial`: tonic refuses https URIs on custom connectors.
        let ep = Endpoint::from_shared(format!("http://{hostport}"))
            .map_err(|e| format!("invalid endpoint {url:?}: {e}"))?
            .connect_timeout(self.dial_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(6))
            .keep_alive_while_idle(true)
            .initial_connection_window_size(Some(16 * 1024 * 1024))
            .initial_stream_window_size(Some(4 * 1024 * 1024));
        let channel = ep
            .connect_with_connector_lazy(tower::service_fn(move |uri: Uri| dial(uri, tls.clone())));
        Ok(Conn {
            url: url.to_string(),
            channel,
            down_until: Mutex::new(None),
        })
    }

    /// The endpoints now in use.
    pub fn urls(&self) -> Vec<String> {
        self.conns
            .read()
            .unwrap()
            .iter()
            .map(|c| c.url.clone())
            .collect()
    }

    /// Replaces the endpoint set, keeping the channels of those that stay.
    pub fn set_urls(&self, urls: &[String]) {
        if urls.is_empty() {
            return;
        }
        let old = self.conns.read().unwrap().clone();
        let mut fresh = Vec::new();
        for url in urls {
            if fresh.iter().any(|c: &Arc<Conn>| same_endpoint(&c.url, url)) {
                continue;
            }
            if let Some(c) = old.iter().find(|c| same_endpoint(&c.url, url)) {
                fresh.push(c.clone());
            } else {
                match self.connect(url) {
                    Ok(c) => fresh.push(Arc::new(c)),
                    Err(e) => log::warn!("ignoring endpoint {url}: {e}"),
                }
            }
        }
        if !fresh.is_empty() {
            *self.conns.write().unwrap() = fresh;
        }
    }

    /// The next endpoint round robin, passing over members that just failed
    /// (unless all did).
    pub fn pick(&self) -> Arc<Conn> {
        let conns = self.conns.read().unwrap();
        let n = conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        for i in 0..n {
            let c = &conns[(start + i) % n];
            if !c.is_down(now) {
                return c.clone();
            }
        }
        conns[start % n].clone()
    }

    pub fn mark_down(&self, conn: &Conn) {
        *conn.down_until.lock().unwrap() = Some(Instant::now() + DOWN_FOR);
    }

    pub fn mark_up(&self, conn: &Conn) {
        *conn.down_until.lock().unwrap() = None;
    }

    /// Runs `call` on one member after another until it succeeds, fails with
    /// an answer from the cluster, or fails in a way `retry` does not allow
    /// to repeat; gives up at `deadline` (the client's), or after the dial
    /// timeout when the client set none.
    pub async fn call<T, F, Fut>(
        &self,
        deadline: Option<Instant>,
        retry: Retry,
        mut call: F,
    ) -> Result<T, Status>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let deadline = deadline.unwrap_or_else(|| Instant::now() + self.dial_timeout);
        let mut failures = 0usize;
        loop {
            let conn = self.pick();
            let result = call(conn.channel.clone()).await;
            let status = match result {
                Ok(v) => {
                    self.mark_up(&conn);
                    return Ok(v);
                }
                Err(s) => s,
            };
            let failure = classify(&status);
            if failure == Failure::Answered {
                self.mark_up(&conn);
                return Err(self.fix_limits(status));
            }
            self.mark_down(&conn);
            let may_retry = failure == Failure::NotSent || retry == Retry::Safe;
            if !may_retry || Instant::now() >= deadline {
                return Err(unavailable(&status));
            }
            failures += 1;
            if failures.is_multiple_of(self.conns.read().unwrap().len().max(1)) {
                tokio::time::sleep(RETRY_PAUSE.min(deadline - Instant::now())).await;
            }
        }
    }

    /// tonic's words for a response over --max-recv-bytes, in grpc-go's.
    fn fix_limits(&self, status: Status) -> Status {
        if status.code() == Code::OutOfRange {
            if let Some(n) = parse_found_bytes(status.message(), "decoded message length too large")
            {
                return Status::resource_exhausted(format!(
                    "grpc: received message larger than max ({n} vs. {})",
                    self.max_recv
                ));
            }
        }
        status
    }

    /// grpc-go's refusal to send a message over --max-send-bytes, or None.
    pub fn check_send(&self, len: usize) -> Result<(), Status> {
        if len > self.max_send {
            return Err(Status::resource_exhausted(format!(
                "trying to send message larger than max ({len} vs. {})",
                self.max_send
            )));
        }
        Ok(())
    }
}

fn parse_found_bytes(message: &str, what: &str) -> Option<usize> {
    let rest = message.split(what).nth(1)?;
    let rest = rest.split("found ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

/// Whether two endpoint spellings name the same member.
fn same_endpoint(a: &str, b: &str) -> bool {
    fn strip(s: &str) -> &str {
        s.split_once("://")
            .map_or(s, |(_, r)| r)
            .trim_end_matches('/')
    }
    strip(a) == strip(b)
}

/// What a failed call tells about the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The cluster answered with this status.
    Answered,
    /// No connection could be made: the request never left the proxy.
    NotSent,
    /// The connection broke: the member may or may not have seen it.
    Lost,
}

/// Tells the cluster's answers from transport failures: a status the
/// cluster sent has no source error; one tonic made up locally has.
pub fn classify(status: &Status) -> Failure {
    use std::error::Error as _;
    let Some(mut err) = status.source() else {
        return Failure::Answered;
    };
    let mut saw_hyper = false;
    loop {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_canceled() {
                // hyper gave the request back unsent (the connection closed
                // before it was written).
                return Failure::NotSent;
            }
            saw_hyper = true;
        }
        if err.downcast_ref::<ConnectError>().is_some() {
            return Failure::NotSent;
        }
        match err.source() {
            Some(next) => err = next,
            None => break,
        }
    }
    if saw_hyper {
        Failure::Lost
    } else if status.code() == Code::Unavailable || status.code() == Code::Unknown {
        // tonic's own "transport error" before any hyper call: the channel
        // had no connection to send on.
        Failure::NotSent
    } else {
        Failure::Answered
    }
}

/// The status a client sees when no member could be reached.
pub fn unavailable(status: &Status) -> Status {
    use std::error::Error as _;
    let mut detail = status.message().to_string();
    let mut src = status.source();
    while let Some(e) = src {
        detail = format!("{detail}: {e}");
        src = e.source();
    }
    Status::unavailable(format!("connection error: desc = \"transport: {detail}\""))
}

/// A request to the cluster carrying the client's token, require-leader
/// mark and remaining deadline.
pub fn outgoing<T>(msg: T, from: &MetadataMap, deadline: Option<Instant>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    copy_metadata(from, req.metadata_mut());
    if let Some(d) = deadline {
        req.set_timeout(d.saturating_duration_since(Instant::now()));
    }
    req
}

pub fn copy_metadata(from: &MetadataMap, to: &mut MetadataMap) {
    for key in FORWARDED_METADATA {
        if let Some(v) = from.get(*key) {
            to.insert(*key, v.clone());
        }
    }
}

/// The client's deadline (its grpc-timeout), if it set one.
pub fn deadline_of(md: &MetadataMap) -> Option<Instant> {
    let v = md.get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    Some(Instant::now() + d)
}

/// A connection that could not be made (marks the request as never sent).
#[derive(Debug)]
pub struct ConnectError(io::Error);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error while dialing {}", self.0)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// A connection to `uri`, TLS-wrapped when `tls` is given.
pub(crate) async fn dial(
    uri: Uri,
    tls: Option<Arc<ClientConfig>>,
) -> Result<TokioIo<UpstreamIo>, ConnectError> {
    let host = uri.host().unwrap_or("127.0.0.1").to_string();
    let port = uri.port_u16().unwrap_or(2379);
    let connect = async {
        let addrs: Vec<SocketAddr> = lookup_host((host.as_str(), port)).await?.collect();
        let mut last = io::Error::other(format!("dial tcp: lookup {host}: no such host"));
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    tcp.set_nodelay(true)?;
                    return Ok(tcp);
                }
                Err(e) => last = io::Error::new(e.kind(), format!("dial tcp {addr}: connect: {e}")),
            }
        }
        Err(last)
    };
    let tcp = connect.await.map_err(ConnectError)?;
    let Some(cfg) = tls else {
        return Ok(TokioIo::new(UpstreamIo::Plain(tcp)));
    };
    let name =
        pki_types::ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_string())
            .map_err(|e| ConnectError(io::Error::other(format!("{host}: {e}"))))?;
    let stream = TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| ConnectError(io::Error::new(e.kind(), format!("tls: {e}"))))?;
    Ok(TokioIo::new(UpstreamIo::Tls(Box::new(stream))))
}

/// A connection to a member: plain TCP, or TLS over it.
pub enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_spellings_of_one_member_match() {
        assert!(same_endpoint("127.0.0.1:2379", "http://127.0.0.1:2379"));
        assert!(same_endpoint("https://a:1/", "a:1"));
        assert!(!same_endpoint("a:1", "a:2"));
    }

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        let mut md = MetadataMap::new();
        md.insert("grpc-timeout", "1500m".parse().unwrap());
        let d = deadline_of(&md).unwrap();
        let left = d.saturating_duration_since(Instant::now());
        assert!(left <= Duration::from_millis(1500) && left > Duration::from_millis(1000));
        md.insert("grpc-timeout", "x".parse().unwrap());
        assert!(deadline_of(&md).is_none());
    }

    #[test]
    fn tonic_decode_limit_text_gives_its_length() {
        let m = "Error, decoded message length too large: found 2000 bytes, the limit is: 10 bytes";
        assert_eq!(
            parse_found_bytes(m, "decoded message length too large"),
            Some(2000)
        );
    }

    #[test]
    fn a_status_from_the_cluster_is_an_answer() {
        assert_eq!(
            classify(&Status::unavailable("etcdserver: leader changed")),
            Failure::Answered
        );
    }
}
