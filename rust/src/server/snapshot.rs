//! Maintenance.Snapshot, served in Rust: the backend streamed from one read
//! transaction as etcd's snapshot (a bbolt file and its SHA-256, see
//! [`crate::snapshot_file`]) in etcd's message shape — 32 KiB
//! `blob`s with `remaining_bytes` counting down to 0, then one last message
//! carrying the SHA-256 of everything before it, no headers. The backend is
//! read on a blocking thread; what is in memory at once is a few chunks,
//! whatever the database's size.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::policy;
use crate::bbolt::TrailerWriter;
use crate::pb::etcdserverpb::{SnapshotRequest, SnapshotResponse};
use crate::raft_node::NodeHandle;
use crate::snapshot_file;

pub const METHOD: &str = "/etcdserverpb.Maintenance/Snapshot";
/// etcd's snapshotSendBufferSize.
const BLOB_BYTES: usize = 32 * 1024;
/// Messages read ahead of the client.
const MESSAGES_IN_FLIGHT: usize = 64;

pub struct SnapshotCall {
    pub node: NodeHandle,
}

type Answers = ReceiverStream<Result<Bytes, Status>>;

impl tower::Service<Request<Streaming<Bytes>>> for SnapshotCall {
    type Response = Response<Answers>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Answers>, Status>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Streaming<Bytes>>) -> Self::Future {
        let node = self.node.clone();
        Box::pin(async move {
            let caller = policy::caller(&node.shared, &req)?;
            let mut inbound = req.into_inner();
            let Some(message) = inbound.message().await? else {
                return Err(Status::cancelled("context canceled"));
            };
            SnapshotRequest::decode(&message[..]).map_err(|e| {
                let text = e.to_string();
                let detail = text
                    .strip_prefix("failed to decode Protobuf message: ")
                    .unwrap_or(&text)
                    .to_string();
                Status::internal(format!(
                    "grpc: failed to unmarshal the received message {detail}"
                ))
            })?;
            node.shared.check_running()?;
            let rtx = {
                let sm = node.shared.sm.read().expect("state poisoned");
                policy::check_bridged(&sm.auth, &caller, METHOD, &message, &|id| {
                    sm.store.keys_with_lease(id)
                })?;
                sm.read()
                    .map_err(|e| Status::internal(format!("etcdserver: snapshot: {e}")))?
            };
            let (answers, rx) = mpsc::channel(MESSAGES_IN_FLIGHT);
            let metrics = node.config.metrics.clone();
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                match stream(&rtx, &answers) {
                    Ok(total) => {
                        metrics.backend_snapshot.observe(started.elapsed());
                        log::info!(
                            "successfully sent database snapshot to client (total-bytes {total})"
                        );
                    }
                    Err(e) => {
                        log::warn!("failed to send database snapshot to client: {e}");
                        let _ = answers.blocking_send(Err(Status::internal(e)));
                    }
                }
            });
            Ok(Response::new(ReceiverStream::new(rx)))
        })
    }
}

/// Sends the snapshot of `rtx` as SnapshotResponses; returns the bytes of
/// the snapshot before its digest.
fn stream(
    rtx: &crate::backend::ReadTx,
    answers: &mpsc::Sender<Result<Bytes, Status>>,
) -> Result<u64, String> {
    let plan = snapshot_file::plan(rtx)?;
    let total = plan.file_size();
    log::info!("sending database snapshot to client (total-bytes {total})");
    let mut out = TrailerWriter::new(Blobs {
        answers,
        total,
        sent: 0,
        pending: Vec::with_capacity(BLOB_BYTES),
    });
    plan.write(&mut snapshot_file::BackendSource(rtx), &mut out)
        .map_err(|e| e.to_string())?;
    let blobs = out.finish().map_err(|e| e.to_string())?;
    if blobs.sent != total {
        return Err(format!(
            "sent {} bytes of a {total}-byte snapshot",
            blobs.sent
        ));
    }
    // The digest, alone and last, as etcd sends it.
    blobs.send(&blobs.pending, 0).map_err(|e| e.to_string())?;
    Ok(total)
}

/// The database bytes as 32 KiB `blob`s with `remaining_bytes` counting
/// down; whatever comes after the database (the digest) is kept in
/// `pending` for the caller to send.
struct Blobs<'a> {
    answers: &'a mpsc::Sender<Result<Bytes, Status>>,
    total: u64,
    sent: u64,
    pending: Vec<u8>,
}

impl Blobs<'_> {
    fn send(&self, blob: &[u8], remaining: u64) -> std::io::Result<()> {
        let resp = SnapshotResponse {
            header: None,
            remaining_bytes: remaining,
            blob: blob.to_vec(),
        };
        self.answers
            .blocking_send(Ok(resp.encode_to_vec().into()))
            .map_err(|_| std::io::Error::other("the client went away"))
    }
}

impl std::io::Write for Blobs<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let in_db = self
            .total
            .saturating_sub(self.sent + self.pending.len() as u64);
        if in_db == 0 {
            self.pending.extend_from_slice(buf);
            return Ok(buf.len());
        }
        let take = (buf.len() as u64).min(in_db) as usize;
        let room = BLOB_BYTES - self.pending.len();
        let take = take.min(room);
        self.pending.extend_from_slice(&buf[..take]);
        let at_end = self.sent + self.pending.len() as u64 == self.total;
        if self.pending.len() == BLOB_BYTES || at_end {
            self.sent += self.pending.len() as u64;
            self.send(&self.pending, self.total - self.sent)?;
            self.pending.clear();
        }
        Ok(take)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
