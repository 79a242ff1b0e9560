//! KV through the proxy: requests go to the cluster (with the namespace
//! applied), serializable Range answers come from the cache when it has
//! them, and writes drop what they touch from it (see [`super::cache`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prost::Message;
use tonic::{Request, Response, Status};

use super::cache::{Cache, Lookup};
use super::upstream::{deadline_of, outgoing, Retry};
use super::Shared;
use crate::errors;
use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::pb::etcdserverpb::kv_server::Kv;
use crate::pb::etcdserverpb::{
    request_op, response_op, CompactionRequest, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseOp, TxnRequest, TxnResponse,
};

/// etcd's text for a request below the compaction revision.
pub const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

pub struct KvProxy {
    shared: Arc<Shared>,
    cache: Mutex<Cache>,
}

impl KvProxy {
    pub fn new(shared: Arc<Shared>) -> KvProxy {
        KvProxy {
            shared,
            cache: Mutex::new(Cache::default()),
        }
    }

    fn client(&self, ch: tonic::transport::Channel) -> KvClient<tonic::transport::Channel> {
        KvClient::new(ch)
            .max_decoding_message_size(self.shared.upstream.max_recv)
            .max_encoding_message_size(usize::MAX)
    }

    fn note_cache_size(&self, cache: &Cache) {
        self.shared
            .metrics
            .cache_keys
            .store(cache.len() as u64, Ordering::Relaxed);
    }

    fn invalidate(&self, key: &[u8], end: &[u8]) {
        let mut c = self.cache.lock().unwrap();
        c.invalidate(key, end);
        self.note_cache_size(&c);
    }

    /// Files the reads of a Txn's taken branch and drops what its writes touched.
    fn txn_to_cache(&self, cache: &mut Cache, reqs: &[RequestOp], resps: &[ResponseOp]) {
        for (req, resp) in reqs.iter().zip(resps) {
            match (&req.request, &resp.response) {
                (
                    Some(request_op::Request::RequestPut(p)),
                    Some(response_op::Response::ResponsePut(_)),
                ) => cache.invalidate(&p.key, b""),
                (
                    Some(request_op::Request::RequestDeleteRange(d)),
                    Some(response_op::Response::ResponseDeleteRange(_)),
                ) => cache.invalidate(&d.key, &d.range_end),
                (
                    Some(request_op::Request::RequestRange(r)),
                    Some(response_op::Response::ResponseRange(rr)),
                ) => cache.add(r, rr),
                (
                    Some(request_op::Request::RequestTxn(t)),
                    Some(response_op::Response::ResponseTxn(tr)),
                ) => {
                    // A nested txn's own branch: drop everything it might touch.
                    for c in &t.compare {
                        cache.invalidate(&c.key, &c.range_end);
                    }
                    let branch = if tr.succeeded { &t.success } else { &t.failure };
                    self.txn_to_cache(cache, branch, &tr.responses);
                }
                _ => {}
            }
        }
    }
}

/// The namespace turns an empty key into a real one; the cluster's own
/// refusal of empty keys is given here first.
fn check_keys_txn(t: &TxnRequest) -> Result<(), Status> {
    for c in &t.compare {
        if c.key.is_empty() {
            return Err(errors::invalid(errors::EMPTY_KEY));
        }
    }
    for op in t.success.iter().chain(t.failure.iter()) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) if r.key.is_empty() => {
                return Err(errors::invalid(errors::EMPTY_KEY))
            }
            Some(request_op::Request::RequestPut(r)) if r.key.is_empty() => {
                return Err(errors::invalid(errors::EMPTY_KEY))
            }
            Some(request_op::Request::RequestDeleteRange(r)) if r.key.is_empty() => {
                return Err(errors::invalid(errors::EMPTY_KEY))
            }
            Some(request_op::Request::RequestTxn(t)) => check_keys_txn(t)?,
            _ => {}
        }
    }
    Ok(())
}

fn check_key(key: &[u8]) -> Result<(), Status> {
    if key.is_empty() {
        return Err(errors::invalid(errors::EMPTY_KEY));
    }
    Ok(())
}

#[tonic::async_trait]
impl Kv for KvProxy {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let (md, _, r) = req.into_parts();
        if r.serializable {
            let found = self.cache.lock().unwrap().get(&r);
            match found {
                Lookup::Hit(resp) => {
                    self.shared
                        .metrics
                        .cache_hits
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok(Response::new(resp));
                }
                Lookup::Compacted => {
                    self.shared
                        .metrics
                        .cache_hits
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(Status::out_of_range(COMPACTED));
                }
                Lookup::Miss => {
                    self.shared
                        .metrics
                        .cache_misses
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let ns = &self.shared.namespace;
        let mut out = r.clone();
        if !ns.is_empty() {
            check_key(&r.key)?;
            ns.range(&mut out);
        }
        let up = &self.shared.upstream;
        up.check_send(out.encoded_len())?;
        let deadline = deadline_of(&md);
        let mut resp = up
            .call(deadline, Retry::Safe, |ch| {
                let req = outgoing(out.clone(), &md, deadline);
                let mut client = self.client(ch);
                async move { client.range(req).await }
            })
            .await?
            .into_inner();
        ns.range_response(&mut resp);
        let mut c = self.cache.lock().unwrap();
        c.add(&r, &resp);
        self.note_cache_size(&c);
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let (md, _, r) = req.into_parts();
        self.invalidate(&r.key, b"");
        let ns = &self.shared.namespace;
        let mut out = r;
        if !ns.is_empty() {
            check_key(&out.key)?;
            ns.put(&mut out);
        }
        let up = &self.shared.upstream;
        up.check_send(out.encoded_len())?;
        let deadline = deadline_of(&md);
        let mut resp = up
            .call(deadline, Retry::Unsafe, |ch| {
                let req = outgoing(out.clone(), &md, deadline);
                let mut client = self.client(ch);
                async move { client.put(req).await }
            })
            .await?
            .into_inner();
        ns.put_response(&mut resp);
        Ok(Response::new(resp))
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let (md, _, r) = req.into_parts();
        self.invalidate(&r.key, &r.range_end);
        let ns = &self.shared.namespace;
        let mut out = r;
        if !ns.is_empty() {
            check_key(&out.key)?;
            ns.delete(&mut out);
        }
        let up = &self.shared.upstream;
        up.check_send(out.encoded_len())?;
        let deadline = deadline_of(&md);
        let mut resp = up
            .call(deadline, Retry::Unsafe, |ch| {
                let req = outgoing(out.clone(), &md, deadline);
                let mut client = self.client(ch);
                async move { client.delete_range(req).await }
            })
            .await?
            .into_inner();
        ns.delete_response(&mut resp);
        Ok(Response::new(resp))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let (md, _, r) = req.into_parts();
        let ns = &self.shared.namespace;
        let mut out = r.clone();
        if !ns.is_empty() {
            check_keys_txn(&r)?;
            ns.txn(&mut out);
        }
        let up = &self.shared.upstream;
        up.check_send(out.encoded_len())?;
        let deadline = deadline_of(&md);
        let read_only = super::txn_is_read_only(&r);
        let retry = if read_only {
            Retry::Safe
        } else {
            Retry::Unsafe
        };
        let mut resp = up
            .call(deadline, retry, |ch| {
                let req = outgoing(out.clone(), &md, deadline);
                let mut client = self.client(ch);
                async move { client.txn(req).await }
            })
            .await?
            .into_inner();
        ns.txn_response(&mut resp);
        let mut c = self.cache.lock().unwrap();
        // A txn may report a stale key as changed: drop every compared range.
        for cmp in &r.compare {
            c.invalidate(&cmp.key, &cmp.range_end);
        }
        let branch = if resp.succeeded {
            &r.success
        } else {
            &r.failure
        };
        self.txn_to_cache(&mut c, branch, &resp.responses);
        self.note_cache_size(&c);
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let (md, _, r) = req.into_parts();
        let up = &self.shared.upstream;
        let deadline = deadline_of(&md);
        let resp = up
            .call(deadline, Retry::Unsafe, |ch| {
                let req = outgoing(r, &md, deadline);
                let mut client = self.client(ch);
                async move { client.compact(req).await }
            })
            .await?
            .into_inner();
        let mut c = self.cache.lock().unwrap();
        c.compact(r.revision);
        self.note_cache_size(&c);
        Ok(Response::new(resp))
    }
}
