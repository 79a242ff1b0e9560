//! The sync worker: brings unsynced watchers up to date and hands them to
//! the synced ones (etcd's syncWatchersLoop and syncVictimsLoop in one).
//!
//! Each step takes up to `watchers_per_sync` unsynced watchers whose stream
//! has room. Those the ring of recent batches covers are given their events
//! from it, under the hub's lock (memory only, no I/O). The others share one
//! read of the backend from the oldest revision any of them needs, taken
//! without the hub's lock; each is then given what it had not seen. A
//! watcher that has every revision up to the hub's newest joins the synced
//! ones in the same locked step, so no applied batch falls between its
//! catch-up and its first live event, and none reaches it twice (a watcher
//! only takes revisions from its next one on).
//!
//! It runs on a thread of its own: the applier and the Raft loop never wait
//! for it, and it waits for nothing but the backend.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::encoded::EncodedEvent;
use super::hub::{give, HubState, ReadError, State, WatchHub};
use super::index::{Index, WatchRange, WatcherKey};

/// How often unsynced watchers are looked at without being asked to
/// (etcd's sync loop runs every 100 ms).
const SYNC_PERIOD: Duration = Duration::from_millis(100);

/// Runs until the hub is stopped.
pub fn run(hub: Arc<WatchHub>) {
    while hub.wait_for_work(SYNC_PERIOD) {
        while !hub.stopped() && step(&hub) {}
    }
}

/// What a backend read is for: a watcher and where it stood.
struct Target {
    key: WatcherKey,
    next_rev: i64,
    range: WatchRange,
}

/// One catch-up step; true if it got anything done (another may follow at
/// once).
pub fn step(hub: &WatchHub) -> bool {
    let settings = hub.settings();
    let mut st = hub.lock();
    let picked = pick(hub, &mut st);
    if picked.is_empty() {
        return false;
    }
    let mut progressed = false;
    let mut targets = Vec::new();
    let mut from_ring = Vec::new();
    for key in picked {
        let w = st.watchers.get(key).expect("picked from the unsynced");
        if w.next_rev > st.notified {
            // Nothing applied since its start revision yet.
            st.sync(key);
            progressed = true;
        } else if st.ring.since(w.next_rev, w.meta.prev_kv).is_some() {
            from_ring.push(key);
        } else {
            targets.push(Target {
                key,
                next_rev: w.next_rev,
                range: w.range.clone(),
            });
        }
    }
    if !from_ring.is_empty() {
        progressed |= catch_up_from_ring(hub, &mut st, &from_ring);
    }
    if targets.is_empty() {
        return progressed;
    }
    drop(st);

    let from = targets.iter().map(|t| t.next_rev).min().expect("not empty");
    let with_prev = {
        let st = hub.lock();
        targets
            .iter()
            .any(|t| st.watchers.get(t.key).is_some_and(|w| w.meta.prev_kv))
    };
    // One watcher reads its own range (a single key reads only its
    // versions); several share a read of every key.
    let range = (targets.len() == 1).then(|| &targets[0].range);
    let read = hub
        .history
        .events(range, from, settings.catch_up_events, with_prev);

    let mut st = hub.lock();
    let read = match read {
        Ok(r) => r,
        Err(ReadError::Compacted(rev)) => {
            for t in &targets {
                if still(&st, t) && t.next_rev < rev {
                    hub.cancel_by_server(&mut st, t.key, &ReadError::Compacted(rev));
                }
            }
            return true;
        }
        Err(e) => {
            for t in &targets {
                if still(&st, t) {
                    hub.cancel_by_server(&mut st, t.key, &e);
                }
            }
            return true;
        }
    };
    let events: Vec<EncodedEvent> = read.events.iter().map(EncodedEvent::new).collect();
    let upto = read.complete_to;
    for t in &targets {
        if !still(&st, t) {
            continue;
        }
        let notified = st.notified;
        let w = st.watchers.get_mut(t.key).expect("checked");
        let mine = events.iter().filter(|e| t.range.contains(e.key()));
        match give(w, mine, upto, settings) {
            Ok(()) => {
                progressed = true;
                if w.next_rev > notified {
                    st.sync(t.key);
                }
            }
            Err(rev) => {
                progressed |= rev > t.next_rev;
                w.next_rev = rev;
            }
        }
    }
    progressed
}

/// Whether a target is still where the read found it (not canceled, not
/// moved on by another step).
fn still(st: &HubState, t: &Target) -> bool {
    st.watchers
        .get(t.key)
        .is_some_and(|w| w.state == State::Unsynced && w.next_rev == t.next_rev)
}

/// Up to `watchers_per_sync` unsynced watchers whose stream has room, taken
/// round-robin so none waits behind the others for ever.
fn pick(hub: &WatchHub, st: &mut HubState) -> Vec<WatcherKey> {
    let max = hub.settings().watchers_per_sync.max(1);
    let low = hub.low_water();
    let mut picked = Vec::new();
    let after: Vec<WatcherKey> = st
        .unsynced
        .range(st.cursor..)
        .chain(st.unsynced.range(..st.cursor))
        .copied()
        .collect();
    for key in after {
        let Some(w) = st.watchers.get(key) else {
            continue;
        };
        // A stream without room remembers that a watcher waits: taking
        // from it wakes this worker again.
        if w.out.has_room(low) {
            picked.push(key);
            if picked.len() == max {
                break;
            }
        }
    }
    if let Some(&last) = picked.last() {
        st.cursor = last.wrapping_add(1);
    }
    picked
}

/// Gives each watcher what the ring holds for it, in one pass over the ring
/// for all of them; those given everything join the synced ones.
fn catch_up_from_ring(hub: &WatchHub, st: &mut HubState, keys: &[WatcherKey]) -> bool {
    let settings = hub.settings();
    let notified = st.notified;
    let mut results: Vec<(WatcherKey, i64, Result<(), i64>)> = Vec::with_capacity(keys.len());
    {
        // The ring is read while the watchers are written: disjoint fields.
        let HubState { watchers, ring, .. } = &mut *st;
        let mut index = Index::default();
        let mut from = i64::MAX;
        for &key in keys {
            let w = watchers.get(key).expect("picked");
            index.insert(&w.range, key);
            from = from.min(w.next_rev);
        }
        let mut mine: HashMap<WatcherKey, Vec<&EncodedEvent>> =
            keys.iter().map(|&k| (k, Vec::new())).collect();
        for batch in ring
            .since(from, false)
            .expect("covers every picked watcher")
        {
            for ev in &batch.events {
                index.for_each_match(ev.key(), |key| {
                    mine.get_mut(&key).expect("indexed").push(ev);
                });
            }
        }
        for (key, evs) in mine {
            let w = watchers.get_mut(key).expect("picked");
            let before = w.next_rev;
            results.push((key, before, give(w, evs.into_iter(), notified, settings)));
        }
    }
    let mut progressed = false;
    for (key, before, result) in results {
        match result {
            Ok(()) => {
                st.sync(key);
                progressed = true;
            }
            Err(rev) => {
                progressed |= rev > before;
                if let Some(w) = st.watchers.get_mut(key) {
                    w.next_rev = rev;
                }
            }
        }
    }
    progressed
}
