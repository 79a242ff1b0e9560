//! Maintenance.Snapshot, served in Rust: the backend streamed from one read
//! transaction (a [`crate::snapshot_file`]) in etcd's message shape — 32 KiB
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
use crate::backend::dump;
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
    let stream_len = dump::size(rtx).map_err(|e| e.to_string())?;
    let total = snapshot_file::body_len(stream_len);
    log::info!("sending database snapshot to client (total-bytes {total})");
    let mut sent = 0u64;
    let send = |blob: &[u8], remaining: u64| {
        let resp = SnapshotResponse {
            header: None,
            remaining_bytes: remaining,
            blob: blob.to_vec(),
        };
        answers
            .blocking_send(Ok(resp.encode_to_vec().into()))
            .map_err(|_| "the client went away".to_string())
    };
    let digest = snapshot_file::write(rtx, stream_len, &mut |chunk| {
        for blob in chunk.chunks(BLOB_BYTES) {
            sent += blob.len() as u64;
            send(blob, total.saturating_sub(sent))?;
        }
        Ok(())
    })?;
    if sent != total {
        return Err(format!("sent {sent} bytes of a {total}-byte snapshot"));
    }
    send(&digest, 0)?;
    Ok(total)
}
