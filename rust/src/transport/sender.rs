//! The sending side: one long-lived stream per peer, and one call per snapshot.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use protobuf::Message as _;
use raft::prelude::Message;
use tokio::net::{lookup_host, TcpSocket};
use tokio::sync::mpsc as tmpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::server::MEMBER_REMOVED;
use super::Transport;
use crate::pb::peer::peer_client::PeerClient;
use crate::pb::peer::{RaftBatch, SnapshotChunk};
use crate::raft_node::Msg;

/// The most messages written as one batch on the stream.
const MAX_BATCH_MESSAGES: usize = 512;
/// Snapshot data goes out in pieces of this size.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A whole snapshot transfer may take this long before it counts as failed.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(120);

/// The message size limit between members: a batch of entries or a snapshot
/// chunk, whatever --max-request-bytes allows clients to send.
pub(super) const MAX_PEER_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Opens a channel to the first reachable URL of a peer.
pub(super) async fn connect(
    urls: &[String],
    local_ip: Option<IpAddr>,
) -> Result<PeerClient<Channel>, String> {
    let mut last = String::from("no peer URL");
    for url in urls {
        let ep = match Endpoint::from_shared(url.clone()) {
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
        let result = match local_ip {
            Some(ip) => {
                ep.connect_with_connector(tower::service_fn(move |uri: Uri| dial(uri, ip)))
                    .await
            }
            None => ep.connect().await,
        };
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

/// A TCP connection to `uri` from `local_ip`.
async fn dial(uri: Uri, local_ip: IpAddr) -> std::io::Result<TokioIo<tokio::net::TcpStream>> {
    let host = uri.host().unwrap_or("127.0.0.1");
    let port = uri.port_u16().unwrap_or(2380);
    let addr: SocketAddr = lookup_host((host, port))
        .await?
        .find(|a| a.is_ipv4() == local_ip.is_ipv4())
        .ok_or_else(|| std::io::Error::other(format!("no address for {host}")))?;
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.bind(SocketAddr::new(local_ip, 0))?;
    sock.set_nodelay(true)?;
    Ok(TokioIo::new(sock.connect(addr).await?))
}

/// Keeps a `Peer.Raft` stream to one peer open and feeds it, reconnecting with
/// backoff, until the peer is removed (the task is aborted).
pub(super) async fn run(
    t: Arc<Transport>,
    to: u64,
    urls: Vec<String>,
    mut rx: tmpsc::Receiver<Message>,
) {
    let mut backoff = BACKOFF_START;
    loop {
        let mut client = match connect(&urls, t.local_ip).await {
            Ok(c) => c,
            Err(e) => {
                log::debug!("peer {to:x} unreachable: {e}");
                t.deliver(Msg::Unreachable(to));
                // What waited is stale by the time we are back: Raft resends.
                while rx.try_recv().is_ok() {}
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
                    let batch = RaftBatch { cluster_id: t.cluster_id(), from: t.self_id(), messages };
                    if btx.try_send(batch).is_err() {
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

/// Sends one MsgSnapshot, its data in chunks, and tells Raft how it went.
pub(super) async fn send_snapshot(t: Arc<Transport>, to: u64, urls: Vec<String>, mut m: Message) {
    let data = std::mem::take(&mut m.mut_snapshot().data);
    let header = m.write_to_bytes().expect("message encodes");
    let size = data.len();
    let (cluster_id, from) = (t.cluster_id(), t.self_id());
    let chunks: Vec<SnapshotChunk> = {
        let mut out = Vec::new();
        let mut pieces = data.chunks(SNAPSHOT_CHUNK_BYTES);
        out.push(SnapshotChunk {
            cluster_id,
            from,
            message: header,
            data: pieces.next().map(|p| p.to_vec()).unwrap_or_default(),
        });
        out.extend(pieces.map(|p| SnapshotChunk {
            cluster_id,
            from,
            message: vec![],
            data: p.to_vec(),
        }));
        out
    };
    let local_ip = t.local_ip;
    let attempt = async move {
        let mut client = connect(&urls, local_ip).await?;
        client
            .snapshot(tokio_stream::iter(chunks))
            .await
            .map_err(|s| s.to_string())?;
        Ok::<(), String>(())
    };
    let ok = match tokio::time::timeout(SNAPSHOT_TIMEOUT, attempt).await {
        Ok(Ok(())) => {
            log::info!("sent snapshot ({size} bytes) to {to:x}");
            true
        }
        Ok(Err(e)) => {
            log::warn!("sending snapshot to {to:x} failed: {e}");
            false
        }
        Err(_) => {
            log::warn!("sending snapshot to {to:x} timed out");
            false
        }
    };
    t.deliver(Msg::SnapshotStatus { to, ok });
}
