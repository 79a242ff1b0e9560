//! --namespace: every key a client names is the namespace plus that key on
//! the cluster, and every key the cluster answers with loses the namespace
//! again, so a tenant sees a keyspace of its own (clientv3's `namespace`
//! package, applied in the proxy).
//!
//! Isolation holds by construction: a prefixed key starts with the prefix,
//! and a prefixed range end is either the prefix plus the client's end
//! (which sorts before the end of the prefix's range) or, for "\0" (from-key
//! and whole-keyspace ranges), the end of the prefix's range itself. No
//! request can therefore name a key outside the prefix; answers are
//! filtered as well as stripped, so a key outside could not leak even if
//! the cluster returned one.
//!
//! Leases, compaction and maintenance are cluster-wide, as in etcd's proxy.

use crate::pb::etcdserverpb::{
    request_op, response_op, Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};
use crate::pb::mvccpb::{Event, KeyValue};
use crate::pb::v3electionpb::LeaderKey;

/// A key prefix; the empty one changes nothing.
#[derive(Clone, Debug, Default)]
pub struct Namespace {
    prefix: Vec<u8>,
    /// The first key after every key that starts with the prefix.
    end: Vec<u8>,
}

impl Namespace {
    pub fn new(prefix: &[u8]) -> Namespace {
        Namespace {
            prefix: prefix.to_vec(),
            end: prefix_end(prefix),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.prefix.is_empty()
    }

    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    pub fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k
    }

    /// A range end on the cluster: "\0" (to the end of the keyspace) becomes
    /// the end of the prefix's range; an empty end (one key) stays empty.
    pub fn range_end(&self, end: &[u8]) -> Vec<u8> {
        if self.is_empty() || end.is_empty() {
            return end.to_vec();
        }
        if end == [0] {
            return self.end.clone();
        }
        self.key(end)
    }

    /// The client's spelling of a key from the cluster; None for a key
    /// outside the namespace.
    pub fn strip<'a>(&self, key: &'a [u8]) -> Option<&'a [u8]> {
        key.strip_prefix(self.prefix.as_slice())
    }

    fn strip_kv(&self, kv: &mut KeyValue) -> bool {
        match self.strip(&kv.key) {
            Some(k) => {
                kv.key = k.to_vec();
                true
            }
            None => false,
        }
    }

    fn strip_kvs(&self, kvs: &mut Vec<KeyValue>) {
        kvs.retain_mut(|kv| self.strip_kv(kv));
    }

    // -- KV ----------------------------------------------------------------------

    pub fn range(&self, r: &mut RangeRequest) {
        if self.is_empty() {
            return;
        }
        r.range_end = self.range_end(&r.range_end);
        r.key = self.key(&r.key);
    }

    pub fn range_response(&self, r: &mut RangeResponse) {
        if !self.is_empty() {
            self.strip_kvs(&mut r.kvs);
        }
    }

    pub fn put(&self, r: &mut PutRequest) {
        if !self.is_empty() {
            r.key = self.key(&r.key);
        }
    }

    pub fn put_response(&self, r: &mut PutResponse) {
        if self.is_empty() {
            return;
        }
        if let Some(kv) = &mut r.prev_kv {
            if !self.strip_kv(kv) {
                r.prev_kv = None;
            }
        }
    }

    pub fn delete(&self, r: &mut DeleteRangeRequest) {
        if self.is_empty() {
            return;
        }
        r.range_end = self.range_end(&r.range_end);
        r.key = self.key(&r.key);
    }

    pub fn delete_response(&self, r: &mut DeleteRangeResponse) {
        if !self.is_empty() {
            self.strip_kvs(&mut r.prev_kvs);
        }
    }

    pub fn compare(&self, c: &mut Compare) {
        c.range_end = self.range_end(&c.range_end);
        c.key = self.key(&c.key);
    }

    pub fn txn(&self, t: &mut TxnRequest) {
        if self.is_empty() {
            return;
        }
        for c in &mut t.compare {
            self.compare(c);
        }
        for op in t.success.iter_mut().chain(t.failure.iter_mut()) {
            self.request_op(op);
        }
    }

    fn request_op(&self, op: &mut RequestOp) {
        match &mut op.request {
            Some(request_op::Request::RequestRange(r)) => self.range(r),
            Some(request_op::Request::RequestPut(r)) => self.put(r),
            Some(request_op::Request::RequestDeleteRange(r)) => self.delete(r),
            Some(request_op::Request::RequestTxn(t)) => self.txn(t),
            None => {}
        }
    }

    pub fn txn_response(&self, t: &mut TxnResponse) {
        if self.is_empty() {
            return;
        }
        for r in &mut t.responses {
            self.response_op(r);
        }
    }

    fn response_op(&self, op: &mut ResponseOp) {
        match &mut op.response {
            Some(response_op::Response::ResponseRange(r)) => self.range_response(r),
            Some(response_op::Response::ResponsePut(r)) => self.put_response(r),
            Some(response_op::Response::ResponseDeleteRange(r)) => self.delete_response(r),
            Some(response_op::Response::ResponseTxn(t)) => self.txn_response(t),
            None => {}
        }
    }

    // -- watch -------------------------------------------------------------------

    /// Strips an event's keys; false when its key is outside the namespace.
    pub fn event(&self, ev: &mut Event) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some(kv) = &mut ev.kv else {
            return false;
        };
        if !self.strip_kv(kv) {
            return false;
        }
        if let Some(prev) = &mut ev.prev_kv {
            if !self.strip_kv(prev) {
                ev.prev_kv = None;
            }
        }
        true
    }

    // -- leases ------------------------------------------------------------------

    /// A lease's attached keys as the tenant sees them: its own, stripped.
    pub fn lease_keys(&self, keys: &mut Vec<Vec<u8>>) {
        if self.is_empty() {
            return;
        }
        keys.retain_mut(|k| match k.strip_prefix(self.prefix.as_slice()) {
            Some(rest) => {
                *k = rest.to_vec();
                true
            }
            None => false,
        });
    }

    // -- lock and election -------------------------------------------------------

    pub fn leader_key(&self, lk: &mut LeaderKey) {
        if self.is_empty() {
            return;
        }
        lk.name = self.key(&lk.name);
        lk.key = self.key(&lk.key);
    }

    pub fn strip_leader_key(&self, lk: &mut LeaderKey) {
        if self.is_empty() {
            return;
        }
        if let Some(n) = self.strip(&lk.name) {
            lk.name = n.to_vec();
        }
        if let Some(k) = self.strip(&lk.key) {
            lk.key = k.to_vec();
        }
    }

    /// A key answered by Lock or Election, stripped (empty if outside).
    pub fn strip_owned(&self, key: &mut Vec<u8>) {
        if self.is_empty() {
            return;
        }
        *key = self.strip(key).map(<[u8]>::to_vec).unwrap_or_default();
    }

    pub fn strip_kv_opt(&self, kv: &mut Option<KeyValue>) {
        if self.is_empty() {
            return;
        }
        if let Some(v) = kv {
            if !self.strip_kv(v) {
                *kv = None;
            }
        }
    }
}

/// The smallest key after every key starting with `prefix` ("\0", the end of
/// the keyspace, when there is none), as clientv3's GetPrefixRangeEnd.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_key_and_whole_keyspace_ranges_stop_at_the_namespace_end() {
        let ns = Namespace::new(b"/t/");
        let mut r = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        };
        ns.range(&mut r);
        assert_eq!(r.key, b"/t/\0");
        assert_eq!(r.range_end, b"/t0");
        let mut r = RangeRequest {
            key: b"a".to_vec(),
            range_end: vec![0],
            ..Default::default()
        };
        ns.range(&mut r);
        assert_eq!(
            (r.key.as_slice(), r.range_end.as_slice()),
            (&b"/t/a"[..], &b"/t0"[..])
        );
    }

    #[test]
    fn a_single_key_stays_a_single_key() {
        let ns = Namespace::new(b"p");
        let mut r = RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        };
        ns.range(&mut r);
        assert_eq!(r.key, b"pk");
        assert!(r.range_end.is_empty());
    }

    #[test]
    fn answers_keep_only_keys_inside_and_lose_the_prefix() {
        let ns = Namespace::new(b"/t/");
        let mut r = RangeResponse {
            kvs: vec![
                KeyValue {
                    key: b"/t/a".to_vec(),
                    ..Default::default()
                },
                KeyValue {
                    key: b"/u/b".to_vec(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        ns.range_response(&mut r);
        assert_eq!(r.kvs.len(), 1);
        assert_eq!(r.kvs[0].key, b"a");
    }

    #[test]
    fn prefix_end_carries_over_ff_bytes() {
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
