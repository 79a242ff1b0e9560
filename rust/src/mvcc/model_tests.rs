//! Randomised check of the store against a naive model that keeps the full
//! key/value map of every revision.

use std::collections::BTreeMap;

use super::testutil::*;
use crate::pb::etcdserverpb::TxnRequest;
use crate::pb::mvccpb::event::EventType;
use crate::pb::mvccpb::{Event, KeyValue};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const KEYS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

type State = BTreeMap<Vec<u8>, KeyValue>;

/// states[r] is the map at revision r (index 0 unused, 1 = empty store).
struct Model {
    states: Vec<State>,
    events: Vec<Vec<Event>>,
}

impl Model {
    fn new() -> Model {
        Model {
            states: vec![State::new(), State::new()],
            events: vec![vec![], vec![]],
        }
    }

    /// Applies one revision's writes: (key, Some(value)) puts, (key, None)
    /// deletes (only if present). Returns whether anything was written.
    fn apply(&mut self, writes: &[(String, Option<String>)]) {
        let rev = self.states.len() as i64;
        let mut st = self.states.last().unwrap().clone();
        let mut evs = vec![];
        for (k, v) in writes {
            let key = k.as_bytes().to_vec();
            let prev = st.get(&key).cloned();
            match v {
                Some(v) => {
                    let kv = KeyValue {
                        key: key.clone(),
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        value: v.as_bytes().to_vec(),
                        lease: 0,
                    };
                    st.insert(key, kv.clone());
                    evs.push(Event {
                        r#type: EventType::Put as i32,
                        kv: Some(kv),
                        prev_kv: prev,
                    });
                }
                None => {
                    if let Some(p) = st.remove(&key) {
                        evs.push(Event {
                            r#type: EventType::Delete as i32,
                            kv: Some(KeyValue {
                                key,
                                mod_revision: rev,
                                ..Default::default()
                            }),
                            prev_kv: Some(p),
                        });
                    }
                }
            }
        }
        if !evs.is_empty() {
            self.states.push(st);
            self.events.push(evs);
        }
    }

    fn current(&self) -> i64 {
        self.states.len() as i64 - 1
    }
}

fn random_step(rng: &mut Rng, s: &mut TestStore, m: &mut Model, step: usize) {
    let key = |rng: &mut Rng| KEYS[rng.below(KEYS.len() as u64) as usize].to_string();
    match rng.below(10) {
        0..=4 => {
            let k = key(rng);
            let v = format!("v{step}");
            let (_, evs) = s.put(&put_req(&k, &v), &any_lease).unwrap();
            m.apply(&[(k, Some(v))]);
            assert_eq!(&evs, m.events.last().unwrap());
        }
        5..=6 => {
            let a = rng.below(KEYS.len() as u64) as usize;
            let b = (a + rng.below(3) as usize).min(KEYS.len());
            let end = if b == KEYS.len() {
                "\0".to_string()
            } else {
                KEYS[b].to_string()
            };
            let end = if a == b { String::new() } else { end };
            let before = m.current();
            let (_, evs) = s.delete_range(&del_req(KEYS[a], &end)).unwrap();
            let doomed: Vec<(String, Option<String>)> = m
                .states
                .last()
                .unwrap()
                .keys()
                .map(|k| String::from_utf8(k.clone()).unwrap())
                .filter(|k| {
                    if end.is_empty() {
                        k == KEYS[a]
                    } else {
                        k.as_str() >= KEYS[a] && (end == "\0" || k.as_str() < end.as_str())
                    }
                })
                .map(|k| (k, None))
                .collect();
            m.apply(&doomed);
            if m.current() != before {
                assert_eq!(&evs, m.events.last().unwrap());
            } else {
                assert!(evs.is_empty());
            }
        }
        _ => {
            let n = 1 + rng.below(4);
            let mut ops = vec![];
            let mut writes = vec![];
            for i in 0..n {
                let k = key(rng);
                if rng.below(3) == 0 {
                    ops.push(del_op(&k, ""));
                    writes.push((k, None));
                } else {
                    let v = format!("t{step}.{i}");
                    ops.push(put_op(&k, &v));
                    writes.push((k, Some(v)));
                }
            }
            let t = TxnRequest {
                compare: vec![],
                success: ops,
                failure: vec![],
            };
            let (_, evs) = s.txn(&t, &any_lease).unwrap();
            let before = m.current();
            m.apply(&writes);
            if m.current() != before {
                assert_eq!(&evs, m.events.last().unwrap());
            }
        }
    }
    assert_eq!(s.current_revision(), m.current());
}

fn check_reads(s: &TestStore, m: &Model) {
    for rev in 1..=m.current() {
        let got = s.range(&range_req("\0", "\0", rev));
        if rev < s.compact_revision() {
            assert_eq!(got, Err(super::MvccError::Compacted));
            continue;
        }
        let want: Vec<KeyValue> = m.states[rev as usize].values().cloned().collect();
        assert_eq!(got.unwrap().kvs, want, "read at {rev}");
        for k in KEYS {
            assert_eq!(
                get_at(s, k, rev),
                m.states[rev as usize].get(k.as_bytes()).cloned()
            );
        }
    }
    assert_eq!(s.keys_count(), m.states.last().unwrap().len());
}

#[test]
fn random_histories_match_model_at_every_revision() {
    let mut compactions = 0;
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut s = TestStore::new();
        let mut m = Model::new();
        for step in 0..120 {
            random_step(&mut rng, &mut s, &mut m, step);
            if rng.below(25) == 0 && m.current() > s.compact_revision().max(1) {
                let lo = s.compact_revision().max(0) + 1;
                let at = lo + rng.below((m.current() - lo + 1) as u64) as i64;
                s.compact(at).unwrap();
                compactions += 1;
            }
        }
        check_reads(&s, &m);
        let mut store = super::Store::rebuild(&s.bucket).unwrap().0;
        store.set_compacted_floor(s.compact_revision());
        if s.compact_revision() > 0 {
            store.compact(s.compact_revision()).unwrap();
        }
        let restored = TestStore {
            store,
            bucket: s.bucket.clone(),
        };
        check_reads(&restored, &m);
        assert_eq!(restored.hash_kv(0), s.hash_kv(0));
    }
    assert!(compactions > 20, "only {compactions} compactions exercised");
}

#[test]
fn random_histories_replay_as_events() {
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let mut s = TestStore::new();
        let mut m = Model::new();
        for step in 0..80 {
            random_step(&mut rng, &mut s, &mut m, step);
        }
        for start in 1..=m.current() {
            let want: Vec<Event> = m.events[start as usize..]
                .iter()
                .flatten()
                .cloned()
                .collect();
            assert_eq!(s.events_since(b"\0", b"\0", start, 0).unwrap(), want);
            for k in KEYS {
                let want_k: Vec<Event> = want
                    .iter()
                    .filter(|e| e.kv.as_ref().unwrap().key == k.as_bytes())
                    .cloned()
                    .collect();
                assert_eq!(s.events_since(k.as_bytes(), b"", start, 0).unwrap(), want_k);
            }
        }
    }
}
