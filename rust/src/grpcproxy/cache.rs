//! The cache of Range answers, as etcd's proxy keeps it: answers are filed
//! under the request (with `serializable` set), served to serializable
//! requests only, and dropped when a write through this proxy touches their
//! range (a Put's key, a DeleteRange's range, every compare of a Txn) or
//! when a request at a revision below the last compaction asks for them.
//! Answers at an explicit revision never change, so no write drops them.
//!
//! Like etcd's (an LRU of 2048 entries), it holds at most [`MAX_ENTRIES`]
//! answers, least recently used out first; it also holds at most
//! [`MAX_BYTES`] of answers, which etcd does not bound. Unlike etcd's, a
//! from-key range ("\0" end) is dropped by writes above its key too (etcd's
//! interval index cannot hold it, so those answers never go stale there
//! until evicted).

use std::collections::{BTreeMap, HashMap, HashSet};

use prost::Message;

use crate::pb::etcdserverpb::{RangeRequest, RangeResponse};

pub const MAX_ENTRIES: usize = 2048;
pub const MAX_BYTES: usize = 64 * 1024 * 1024;

/// What the cache has for a request.
pub enum Lookup {
    Hit(RangeResponse),
    /// The request's revision is below the last compaction.
    Compacted,
    Miss,
}

struct Entry {
    resp: RangeResponse,
    size: usize,
    /// Position in the recency order.
    tick: u64,
    /// The range this entry is indexed under (None: explicit revision).
    indexed: Option<(Vec<u8>, Vec<u8>)>,
}

/// A range as a request names it: (key, end).
type Interval = (Vec<u8>, Vec<u8>);

#[derive(Default)]
pub struct Cache {
    entries: HashMap<Vec<u8>, Entry>,
    recency: BTreeMap<u64, Vec<u8>>,
    next_tick: u64,
    bytes: usize,
    /// Single-key requests by key: most cached answers.
    by_key: HashMap<Vec<u8>, HashSet<Vec<u8>>>,
    /// Ranges: (key, end) -> request keys ("\0" end: to the end).
    by_range: HashMap<Interval, HashSet<Vec<u8>>>,
    compacted: i64,
    pub hits: u64,
    pub misses: u64,
}

/// The cache key of a request: its encoding with `serializable` set.
fn cache_key(req: &RangeRequest) -> Vec<u8> {
    if req.serializable {
        return req.encode_to_vec();
    }
    let mut r = req.clone();
    r.serializable = true;
    r.encode_to_vec()
}

fn overlaps(key: &[u8], end: &[u8], wkey: &[u8], wend: &[u8]) -> bool {
    // [key, end) against [wkey, wend); an empty end is the single key, "\0"
    // runs to the end of the keyspace.
    let to_end = |e: &[u8]| e == [0];
    let (k_end_single, w_end_single) = (end.is_empty(), wend.is_empty());
    let contains = |k: &[u8], e: &[u8], x: &[u8]| -> bool {
        if e.is_empty() {
            k == x
        } else {
            x >= k && (to_end(e) || x < e)
        }
    };
    if w_end_single {
        return contains(key, end, wkey);
    }
    if k_end_single {
        return contains(wkey, wend, key);
    }
    // Two intervals overlap when each starts before the other ends.
    let a_before_b_end = to_end(wend) || key < wend;
    let b_before_a_end = to_end(end) || wkey < end;
    a_before_b_end && b_before_a_end
}

impl Cache {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&mut self, req: &RangeRequest) -> Lookup {
        let k = cache_key(req);
        if req.revision > 0 && req.revision < self.compacted {
            self.remove(&k);
            self.hits += 1;
            return Lookup::Compacted;
        }
        let tick = self.next_tick;
        let Some(e) = self.entries.get_mut(&k) else {
            self.misses += 1;
            return Lookup::Miss;
        };
        self.next_tick += 1;
        self.recency.remove(&e.tick);
        e.tick = tick;
        self.recency.insert(tick, k);
        self.hits += 1;
        Lookup::Hit(e.resp.clone())
    }

    pub fn add(&mut self, req: &RangeRequest, resp: &RangeResponse) {
        if req.revision != 0 && req.revision <= self.compacted {
            return;
        }
        let k = cache_key(req);
        let size = resp.encoded_len() + k.len();
        if size > MAX_BYTES / 4 {
            return;
        }
        self.remove(&k);
        let indexed = (req.revision == 0).then(|| (req.key.clone(), req.range_end.clone()));
        if let Some((key, end)) = &indexed {
            if end.is_empty() {
                self.by_key
                    .entry(key.clone())
                    .or_default()
                    .insert(k.clone());
            } else {
                self.by_range
                    .entry((key.clone(), end.clone()))
                    .or_default()
                    .insert(k.clone());
            }
        }
        let tick = self.next_tick;
        self.next_tick += 1;
        self.recency.insert(tick, k.clone());
        self.bytes += size;
        self.entries.insert(
            k,
            Entry {
                resp: resp.clone(),
                size,
                tick,
                indexed,
            },
        );
        while self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES {
            let Some((_, oldest)) = self.recency.pop_first() else {
                break;
            };
            self.remove(&oldest);
        }
    }

    fn remove(&mut self, k: &[u8]) {
        let Some(e) = self.entries.remove(k) else {
            return;
        };
        self.recency.remove(&e.tick);
        self.bytes -= e.size;
        if let Some((key, end)) = e.indexed {
            if end.is_empty() {
                if let Some(set) = self.by_key.get_mut(&key) {
                    set.remove(k);
                    if set.is_empty() {
                        self.by_key.remove(&key);
                    }
                }
            } else {
                let ivl = (key, end);
                if let Some(set) = self.by_range.get_mut(&ivl) {
                    set.remove(k);
                    if set.is_empty() {
                        self.by_range.remove(&ivl);
                    }
                }
            }
        }
    }

    /// Drops every latest-revision answer whose range meets [key, end).
    pub fn invalidate(&mut self, key: &[u8], end: &[u8]) {
        if self.entries.is_empty() {
            return;
        }
        let mut doomed: Vec<Vec<u8>> = Vec::new();
        if end.is_empty() {
            if let Some(set) = self.by_key.get(key) {
                doomed.extend(set.iter().cloned());
            }
        } else {
            for (k, set) in &self.by_key {
                if overlaps(key, end, k, b"") {
                    doomed.extend(set.iter().cloned());
                }
            }
        }
        for ((k, e), set) in &self.by_range {
            if overlaps(key, end, k, e) {
                doomed.extend(set.iter().cloned());
            }
        }
        for k in doomed {
            self.remove(&k);
        }
    }

    pub fn compact(&mut self, revision: i64) {
        self.compacted = self.compacted.max(revision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::mvccpb::KeyValue;

    fn get(key: &[u8], end: &[u8]) -> RangeRequest {
        RangeRequest {
            key: key.to_vec(),
            range_end: end.to_vec(),
            serializable: true,
            ..Default::default()
        }
    }

    fn answer(rev: i64) -> RangeResponse {
        RangeResponse {
            kvs: vec![KeyValue {
                key: b"a".to_vec(),
                ..Default::default()
            }],
            count: 1,
            header: Some(crate::pb::etcdserverpb::ResponseHeader {
                revision: rev,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn hit(c: &mut Cache, r: &RangeRequest) -> bool {
        matches!(c.get(r), Lookup::Hit(_))
    }

    #[test]
    fn a_write_to_a_key_drops_answers_that_cover_it_only() {
        let mut c = Cache::default();
        c.add(&get(b"a", b""), &answer(1));
        c.add(&get(b"b", b""), &answer(1));
        c.add(&get(b"a", b"c"), &answer(1));
        c.add(&get(b"x", b"\0"), &answer(1));
        c.invalidate(b"b", b"");
        assert!(hit(&mut c, &get(b"a", b"")));
        assert!(!hit(&mut c, &get(b"b", b"")));
        assert!(!hit(&mut c, &get(b"a", b"c")));
        assert!(hit(&mut c, &get(b"x", b"\0")));
        c.invalidate(b"y", b"");
        assert!(!hit(&mut c, &get(b"x", b"\0")));
    }

    #[test]
    fn a_deleted_range_drops_single_keys_inside_it() {
        let mut c = Cache::default();
        c.add(&get(b"k1", b""), &answer(1));
        c.add(&get(b"z", b""), &answer(1));
        c.invalidate(b"k", b"l");
        assert!(!hit(&mut c, &get(b"k1", b"")));
        assert!(hit(&mut c, &get(b"z", b"")));
    }

    #[test]
    fn answers_at_a_revision_survive_writes_but_not_compaction() {
        let mut c = Cache::default();
        let mut at = get(b"a", b"");
        at.revision = 5;
        c.add(&at, &answer(5));
        c.invalidate(b"a", b"");
        assert!(hit(&mut c, &at));
        c.compact(6);
        assert!(matches!(c.get(&at), Lookup::Compacted));
    }

    #[test]
    fn the_least_recently_used_answer_goes_first() {
        let mut c = Cache::default();
        for i in 0..MAX_ENTRIES + 1 {
            c.add(&get(format!("k{i}").as_bytes(), b""), &answer(1));
        }
        assert_eq!(c.len(), MAX_ENTRIES);
        assert!(!hit(&mut c, &get(b"k0", b"")));
        assert!(hit(&mut c, &get(b"k1", b"")));
    }

    #[test]
    fn linearizable_and_serializable_requests_share_an_entry() {
        let mut c = Cache::default();
        let mut lin = get(b"a", b"");
        lin.serializable = false;
        c.add(&lin, &answer(1));
        assert!(hit(&mut c, &get(b"a", b"")));
    }
}
