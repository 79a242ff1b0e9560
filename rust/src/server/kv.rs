//! The KV service, served entirely in Rust: validation, Raft, the store, and
//! the answer straight back on the wire.

use std::sync::atomic::Ordering;

use prost::Message;
use tonic::{Request, Response, Status};

use super::validate;
use crate::auth::{policy, AuthStore, Caller};
use crate::errors;
use crate::pb::etcdserverpb::kv_server::Kv;
use crate::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::pb::internal::internal_request::Request as Internal;
use crate::raft_node::{Applied, NodeHandle};
use crate::state_machine::Outcome;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS of each client connection.
    pub max_concurrent_streams: u32,
}

pub struct KvService {
    node: NodeHandle,
    limits: Limits,
}

impl KvService {
    pub fn new(node: NodeHandle, limits: Limits) -> KvService {
        KvService { node, limits }
    }

    fn header(&self, revision: i64, raft_term: u64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.node.config.cluster_id,
            member_id: self.node.config.id,
            revision,
            raft_term,
        })
    }

    /// etcd measures the Raft entry a request becomes, not the request alone.
    fn check_size(&self, m: &impl Message) -> Result<(), Status> {
        if raft_entry_len(self.node.config.id, m.encoded_len()) > self.limits.max_request_bytes {
            return Err(errors::invalid(errors::REQUEST_TOO_LARGE));
        }
        Ok(())
    }

    async fn propose(&self, request: Internal) -> Result<Applied, Status> {
        self.refuse_on_learner()?;
        self.node.propose(request).await
    }

    /// A learner has no say in Raft: etcd lets it answer serializable reads only.
    fn refuse_on_learner(&self) -> Result<(), Status> {
        if self.node.shared.learner.load(Ordering::Acquire) {
            return Err(errors::not_for_learner());
        }
        Ok(())
    }

    /// Checks the request's token and what `check` says the caller may do.
    fn authorize<R>(
        &self,
        req: &Request<R>,
        check: impl FnOnce(&AuthStore, &Caller) -> Result<(), Status>,
    ) -> Result<(), Status> {
        let caller = policy::caller(&self.node.shared, req)?;
        if caller == Caller::Anyone {
            return Ok(());
        }
        let sm = self.node.shared.sm.read().expect("state poisoned");
        check(&sm.auth, &caller)
    }

    async fn read_index(&self) -> Result<(), Status> {
        self.refuse_on_learner()?;
        self.node.read_index().await
    }
}

/// The size of etcd's InternalRaftRequest for a request of `body` bytes: a
/// header (field 100) with the request id, then the request (field 4..6).
/// etcd's id generator puts the member id's low 16 bits on top of a 48-bit
/// clock+counter, so the id's varint length follows from the member id.
/// (An authenticated caller's name and auth revision, which etcd also puts in
/// the header, are not counted.)
fn raft_entry_len(member_id: u64, body: usize) -> usize {
    use prost::encoding::encoded_len_varint;
    let id = (member_id << 48) | (1 << 47);
    let header = 1 + encoded_len_varint(id);
    2 + encoded_len_varint(header as u64) + header + 1 + encoded_len_varint(body as u64) + body
}

fn backend_status(e: crate::backend::BackendError) -> Status {
    Status::from(crate::mvcc::MvccError::Backend(e.to_string()))
}

fn unexpected(o: Outcome) -> Status {
    Status::internal(format!("etcdcore: unexpected apply outcome {o:?}"))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        self.authorize(&req, |a, c| policy::check_range(a, c, req.get_ref()))?;
        let r = req.into_inner();
        validate::range(&r)?;
        if !r.serializable {
            self.read_index().await?;
        }
        self.node.shared.check_running()?;
        // The index is read under the state's lock; the values from the read
        // transaction taken with it, after, so a big range never holds up
        // the applier.
        let (plan, rtx, revision) = {
            let sm = self.node.shared.sm.read().expect("state poisoned");
            let plan = sm.store.plan_range(&r, sm.store.current_revision())?;
            (
                plan,
                sm.read().map_err(backend_status)?,
                sm.store.current_revision(),
            )
        };
        let mut resp = plan.read(rtx.key_bucket())?;
        resp.header = self.header(revision, self.node.shared.term());
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.authorize(&req, |a, c| policy::check_put(a, c, req.get_ref()))?;
        let r = req.into_inner();
        validate::put(&r)?;
        self.check_size(&r)?;
        let a = self.propose(Internal::Put(r)).await?;
        match a.outcome {
            Outcome::Put(mut p) => {
                p.header = self.header(a.revision, a.term);
                Ok(Response::new(p))
            }
            o => Err(unexpected(o)),
        }
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        self.authorize(&req, |a, c| policy::check_delete(a, c, req.get_ref()))?;
        let r = req.into_inner();
        validate::delete_range(&r)?;
        self.check_size(&r)?;
        let a = self.propose(Internal::DeleteRange(r)).await?;
        match a.outcome {
            Outcome::DeleteRange(mut d) => {
                d.header = self.header(a.revision, a.term);
                Ok(Response::new(d))
            }
            o => Err(unexpected(o)),
        }
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        self.authorize(&req, |a, c| policy::check_txn(a, c, req.get_ref()))?;
        let r = req.into_inner();
        validate::txn(&r, self.limits.max_txn_ops)?;
        if validate::txn_is_read_only(&r) {
            // Reads need no Raft round, only a confirmed read point.
            if !validate::txn_is_serializable(&r) {
                self.read_index().await?;
            }
            self.node.shared.check_running()?;
            let sm = self.node.shared.sm.read().expect("state poisoned");
            let rtx = sm.read().map_err(backend_status)?;
            let mut t = sm.store.read_only_txn(rtx.key_bucket(), &r)?;
            t.header = self.header(sm.store.current_revision(), self.node.shared.term());
            return Ok(Response::new(t));
        }
        self.check_size(&r)?;
        let a = self.propose(Internal::Txn(r)).await?;
        match a.outcome {
            Outcome::Txn(mut t) => {
                t.header = self.header(a.revision, a.term);
                Ok(Response::new(t))
            }
            o => Err(unexpected(o)),
        }
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        self.authorize(&req, |a, c| a.is_admin(c))?;
        let r = req.into_inner();
        let a = self.propose(Internal::Compaction(r)).await?;
        match a.outcome {
            Outcome::Compaction(mut c) => {
                c.header = self.header(a.revision, a.term);
                Ok(Response::new(c))
            }
            o => Err(unexpected(o)),
        }
    }
}
