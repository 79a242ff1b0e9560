//! The sending side: one long-lived stream per peer, and one call per snapshot.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use protobuf::Message as _;
use raft::prelude::Message;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{lookup_host, TcpSocket, TcpStream};
use tokio::sync::mpsc as tmpsc;
use tokio_rustls::rustls::{pki_types, ClientConfig};
use tokio_rustls::TlsConnector;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::server::MEMBER_REMOVED;
use super::Transport;
use crate::backend::dump;
use crate::metrics::PeerCounters;
use crate::pb::peer::peer_client::PeerClient;
use crate::pb::peer::{RaftBatch, SnapshotChunk};
use crate::raft_node::Msg;

/// The most messages written as one batch on the stream.
const MAX_BATCH_MESSAGES: usize = 512;
/// Snapshot chunks (of about 1 MiB, `dump::CHUNK_BYTES`) read ahead of the
/// network.
const SNAPSHOT_CHUNKS_IN_FLIGHT: usize = 4;
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A whole snapshot transfer may take this long before it counts as failed
/// (a backend of several GB over a slow link).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The message size limit between members: a batch of entries or a snapshot
/// chunk, whatever --max-request-bytes allows clients to send.
pub(super) const MAX_PEER_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Opens a channel to the first reachable URL of a peer: TLS (with `tls`)
/// for https URLs, from `local_ip` when given.
pub(super) async fn connect(
    urls: &[String],
    local_ip: Option<IpAddr>,
    tls: Option<Arc<ClientConfig>>,
) -> Result<PeerClient<Channel>, String> {
    let mut last = String::from("no peer URL");
    for url in urls {
        // tonic refuses https URIs on a custom connector; TLS happens in
        // `dial`, so the channel itself is given the plain-http spelling.
        let (plain, https) = match url.strip_prefix("https://") {
            Some(rest) => (format!("http://{rest}"), true),
            None => (url.clone(), false),
        };
        let tls = match (https, &tls) {
            (false, _) => None,
            (true, Some(cfg)) => Some(cfg.clone()),
            (true, None) => {
                last =
                    format!("{url}: an https peer URL needs --peer-cert-file or --peer-auto-tls");
                continue;
            }
        };
        let ep = match Endpoint::from_shared(plain) {
            Ok(ep) => ep
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(1))
                .keep_alive_timeout(Duration::from_secs(3))
                .keep_alive_while_idle(true),
            Err(e) => {
                last = format!("{url}: {e}");
                continue;
            }
        };
        let result = ep
            .connect_with_connector(tower::service_fn(move |uri: Uri| {
                dial(uri, local_ip, tls.clone())
            }))
            .await;
        match result {
            Ok(ch) => {
                return Ok(PeerClient::new(ch)
                    .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES))
            }
            Err(e) => last = format!("{url}: {e}"),
        }
    }
    Err(last)
}

/// A connection to `uri`, from `local_ip` when given, wrapped in TLS when
/// `tls` is given.
async fn dial(
    uri: Uri,
    local_ip: Option<IpAddr>,
    tls: Option<Arc<ClientConfig>>,
) -> std::io::Result<TokioIo<PeerIo>> {
    let host = uri.host().unwrap_or("127.0.0.1").to_string();
    let port = uri.port_u16().unwrap_or(2380);
    let addr: SocketAddr = lookup_host((host.as_str(), port))
        .await?
        .find(|a| local_ip.is_none_or(|ip| a.is_ipv4() == ip.is_ipv4()))
        .ok_or_else(|| std::io::Error::other(format!("no address for {host}")))?;
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = local_ip {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    sock.set_nodelay(true)?;
    let tcp = sock.connect(addr).await?;
    let Some(cfg) = tls else {
        return Ok(TokioIo::new(PeerIo::Plain(tcp)));
    };
    let name =
        pki_types::ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_string())
            .map_err(|e| std::io::Error::other(format!("{host}: {e}")))?;
    let stream = TlsConnector::from(cfg).connect(name, tcp).await?;
    Ok(TokioIo::new(PeerIo::Tls(Box::new(stream))))
}

/// An outgoing peer connection: plain TCP, or TLS over it.
pub(super) enum PeerIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for PeerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PeerIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PeerIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PeerIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerIo::Plain(s) => Pin::new(s).poll_flush(cx),
            PeerIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PeerIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Keeps a `Peer.Raft` stream to one peer open and feeds it, reconnecting with
/// backoff, until the peer is removed (the task is aborted).
pub(super) async fn run(
    t: Arc<Transport>,
    to: u64,
    urls: Vec<String>,
    mut rx: tmpsc::Receiver<Message>,
    counters: Arc<PeerCounters>,
) {
    let mut backoff = BACKOFF_START;
    loop {
        let mut client = match connect(&urls, t.local_ip, t.tls.clone()).await {
            Ok(c) => c,
            Err(e) => {
                log::debug!("peer {to:x} unreachable: {e}");
                t.deliver(Msg::Unreachable(to));
                // What waited is stale by the time we are back: Raft resends.
                while rx.try_recv().is_ok() {
                    counters.sent_failures.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_START;
        let (btx, brx) = tmpsc::channel::<RaftBatch>(64);
        let mut call = tokio::spawn(async move { client.raft(ReceiverStream::new(brx)).await });
        loop {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(first) = msg else {
                        call.abort();
                        return;
                    };
                    let mut messages = vec![first.write_to_bytes().expect("message encodes")];
                    while messages.len() < MAX_BATCH_MESSAGES {
                        match rx.try_recv() {
                            Ok(m) => messages.push(m.write_to_bytes().expect("message encodes")),
                            Err(_) => break,
                        }
                    }
                    let (count, bytes) = (messages.len() as u64, messages.iter().map(Vec::len).sum::<usize>() as u64);
                    let batch = RaftBatch { cluster_id: t.cluster_id(), from: t.self_id(), messages };
                    if btx.try_send(batch).is_ok() {
                        counters.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
                    } else {
                        counters.sent_failures.fetch_add(count, Ordering::Relaxed);
                        // The stream is stuck (the peer stopped reading) or gone.
                        t.deliver(Msg::Unreachable(to));
                        if btx.is_closed() {
                            break;
                        }
                    }
                }
                r = &mut call => {
                    if let Ok(Err(status)) = r {
                        if status.message() == MEMBER_REMOVED {
                            t.deliver(Msg::Removed);
                            return;
                        }
                        log::debug!("raft stream to {to:x} ended: {status}");
                    }
                    break;
                }
            }
        }
        call.abort();
        t.deliver(Msg::Unreachable(to));
        tokio::time::sleep(backoff).await;
    }
}

/// Sends one MsgSnapshot, then the backend it stands for in chunks (from
/// the read transaction the snapshot was taken with), and tells Raft how it
/// went.
pub(super) async fn send_snapshot(
    t: Arc<Transport>,
    to: u64,
    urls: Vec<String>,
    m: Message,
    counters: Arc<PeerCounters>,
) {
    let started = std::time::Instant::now();
    let index = m.get_snapshot().get_metadata().index;
    let held = t.link().and_then(|l| {
        l.shared
            .outgoing_snapshots
            .lock()
            .expect("snapshots poisoned")
            .remove(&to)
    });
    let rtx = match held {
        Some((i, rtx)) if i == index => rtx,
        _ => {
            log::warn!("no backend held for the snapshot at {index} to {to:x}");
            t.deliver(Msg::SnapshotStatus { to, ok: false });
            return;
        }
    };
    let header = m.write_to_bytes().expect("message encodes");
    let (cluster_id, from) = (t.cluster_id(), t.self_id());
    let (chunks, chunk_rx) = tmpsc::channel::<SnapshotChunk>(SNAPSHOT_CHUNKS_IN_FLIGHT);
    let first = SnapshotChunk {
        cluster_id,
        from,
        message: header,
        data: vec![],
    };
    let _ = chunks.try_send(first);
    // The backend is read on a blocking thread; the channel's bound is all
    // of it that is ever in memory.
    let producer = tokio::task::spawn_blocking(move || {
        dump::write(&rtx, &mut |data| {
            chunks
                .blocking_send(SnapshotChunk {
                    cluster_id,
                    from,
                    message: vec![],
                    data,
                })
                .map_err(|_| "the stream to the peer closed".to_string())
        })
    });
    let local_ip = t.local_ip;
    let tls = t.tls.clone();
    let attempt = async move {
        let mut client = connect(&urls, local_ip, tls).await?;
        client
            .snapshot(ReceiverStream::new(chunk_rx))
            .await
            .map_err(|s| s.to_string())?;
        Ok::<(), String>(())
    };
    let sent = tokio::time::timeout(SNAPSHOT_TIMEOUT, attempt).await;
    let produced = producer.await;
    let ok = match (sent, produced) {
        (Ok(Ok(())), Ok(Ok(bytes))) => {
            log::info!("sent snapshot at index {index} ({bytes} bytes) to {to:x}");
            counters.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
            true
        }
        (Ok(Err(e)), _) => {
            log::warn!("sending snapshot to {to:x} failed: {e}");
            false
        }
        (Err(_), _) => {
            log::warn!("sending snapshot to {to:x} timed out");
            false
        }
        (_, Ok(Err(e))) => {
            log::warn!("reading the backend for a snapshot to {to:x} failed: {e}");
            false
        }
        (_, Err(e)) => {
            log::warn!("reading the backend for a snapshot to {to:x} failed: {e}");
            false
        }
    };
    if ok {
        t.metrics.backend_snapshot.observe(started.elapsed());
    } else {
        counters.sent_failures.fetch_add(1, Ordering::Relaxed);
    }
    t.deliver(Msg::SnapshotStatus { to, ok });
}
