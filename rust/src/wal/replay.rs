//! Folding decoded records, oldest first, into the state a restarting member
//! needs: metadata, the last hard state, the last snapshot mark and the live
//! log entries after it.

use std::path::PathBuf;

use super::record::Record;

/// One raft log entry as the WAL holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub index: u64,
    pub term: u64,
    /// The encoded raft `Entry`.
    pub data: Vec<u8>,
}

/// What [`super::Wal::open`] found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// The metadata the WAL was created with; `None` for a WAL created by
    /// this very `open`.
    pub metadata: Option<Vec<u8>>,
    /// The last hard state written.
    pub hard_state: Option<Vec<u8>>,
    /// The last snapshot mark written, as (index, term).
    pub snapshot: Option<(u64, u64)>,
    /// The live entries after the snapshot mark, contiguous and ascending.
    pub entries: Vec<LogEntry>,
    /// The segment whose torn tail was cut off, and the length it was cut to.
    pub repaired_tail: Option<(PathBuf, u64)>,
}

/// Builds a [`Replay`] from records fed oldest first. `P` is where a record
/// was read, so that errors can point at it.
pub(super) struct Replayer<P> {
    pub replay: Replay,
    /// Where `replay.entries[0]` was read, when nothing proves the entries
    /// join up with the snapshot mark before them.
    run_start: Option<P>,
}

impl<P: Copy> Replayer<P> {
    pub fn new() -> Self {
        Replayer {
            replay: Replay::default(),
            run_start: None,
        }
    }

    /// Folds in the next record. `Err` is the reason the log cannot be
    /// trusted from this record on.
    pub fn apply(&mut self, record: Record, at: P) -> Result<(), String> {
        let r = &mut self.replay;
        match record {
            Record::Metadata(m) => match &r.metadata {
                None => r.metadata = Some(m),
                Some(first) if *first != m => {
                    return Err("metadata differs from the first segment's".into())
                }
                Some(_) => {}
            },
            Record::HardState(hs) => r.hard_state = Some(hs),
            Record::SnapshotMark { index, term } => {
                r.snapshot = Some((index, term));
                let before = r.entries.len();
                r.entries.retain(|e| e.index > index);
                if r.entries.len() < before {
                    // The mark cut into a contiguous run, so what is left
                    // starts right after it.
                    self.run_start = None;
                }
            }
            Record::Entry { index, term, data } => {
                if r.snapshot.is_some_and(|(floor, _)| index <= floor) {
                    // Already inside a snapshot: committed, never rewritten.
                    return Ok(());
                }
                match r.entries.last() {
                    Some(last) if index <= last.index => {
                        // Raft replaced an uncommitted tail: the newer entry
                        // and everything after it supersede the old ones.
                        let keep = r.entries.partition_point(|e| e.index < index);
                        r.entries.truncate(keep);
                    }
                    Some(last) if index != last.index + 1 => {
                        return Err(format!(
                            "entry {index} follows entry {}: entries are missing",
                            last.index
                        ));
                    }
                    _ => {}
                }
                if r.entries.is_empty() {
                    // A run may start anywhere: after segments were released
                    // the oldest one left begins mid-log, and the mark that
                    // covers what came before may only follow later.
                    // `finish` checks where the run ended up starting.
                    self.run_start = Some(at);
                }
                r.entries.push(LogEntry { index, term, data });
            }
        }
        Ok(())
    }

    /// The replay, once the entries are known to follow the snapshot mark
    /// without a hole; otherwise where the first of them was read, and why.
    pub fn finish(self) -> Result<Replay, (P, String)> {
        let r = self.replay;
        if let (Some((mark, _)), Some(first), Some(at)) =
            (r.snapshot, r.entries.first(), self.run_start)
        {
            if first.index != mark + 1 {
                return Err((
                    at,
                    format!(
                        "entry {} follows the snapshot mark at {mark}: entries are missing",
                        first.index
                    ),
                ));
            }
        }
        Ok(r)
    }
}

impl Replay {
    /// The index the log ends at: its last entry, else the snapshot mark.
    pub(super) fn last_index(&self) -> u64 {
        let snap = self.snapshot.map_or(0, |(i, _)| i);
        self.entries.last().map_or(snap, |e| e.index.max(snap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Record {
        Record::Entry {
            index,
            term,
            data: format!("{index}@{term}").into_bytes(),
        }
    }

    /// Folds `records`, failing with the position (ordinal) and reason.
    fn fold_at(records: impl IntoIterator<Item = Record>) -> Result<Replay, (usize, String)> {
        let mut r = Replayer::new();
        for (at, rec) in records.into_iter().enumerate() {
            r.apply(rec, at).map_err(|e| (at, e))?;
        }
        r.finish()
    }

    fn fold(records: impl IntoIterator<Item = Record>) -> Result<Replay, String> {
        fold_at(records).map_err(|(_, e)| e)
    }

    fn ids(r: &Replay) -> Vec<(u64, u64)> {
        r.entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn last_hard_state_wins() {
        let r = fold([
            Record::HardState(b"a".to_vec()),
            entry(1, 1),
            Record::HardState(b"b".to_vec()),
        ])
        .unwrap();
        assert_eq!(r.hard_state.as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn lower_index_discards_the_replayed_tail_from_there_on() {
        let r = fold([
            entry(1, 1),
            entry(2, 1),
            entry(3, 1),
            entry(2, 2),
            entry(3, 2),
        ])
        .unwrap();
        assert_eq!(ids(&r), [(1, 1), (2, 2), (3, 2)]);
    }

    #[test]
    fn snapshot_mark_drops_entries_up_to_it_before_and_after() {
        let r = fold([
            entry(1, 1),
            entry(2, 1),
            entry(3, 1),
            Record::SnapshotMark { index: 2, term: 1 },
            entry(2, 1),
            entry(4, 1),
        ])
        .unwrap();
        assert_eq!(ids(&r), [(3, 1), (4, 1)]);
        assert_eq!(r.snapshot, Some((2, 1)));
        assert_eq!(r.last_index(), 4);
    }

    #[test]
    fn snapshot_mark_past_the_log_lets_entries_resume_after_it() {
        let r = fold([
            entry(1, 1),
            Record::SnapshotMark { index: 10, term: 2 },
            entry(11, 2),
        ])
        .unwrap();
        assert_eq!(ids(&r), [(11, 2)]);
    }

    #[test]
    fn gap_between_entries_is_an_error() {
        let err = fold([entry(1, 1), entry(3, 1)]).unwrap_err();
        assert!(err.contains("entries are missing"), "{err}");
    }

    #[test]
    fn gap_after_a_snapshot_mark_is_an_error_at_the_entry_after_it() {
        let (at, err) = fold_at([
            entry(1, 1),
            Record::SnapshotMark { index: 5, term: 1 },
            entry(7, 1),
            entry(8, 1),
        ])
        .unwrap_err();
        assert_eq!(at, 2);
        assert!(
            err.contains("entry 7 follows the snapshot mark at 5"),
            "{err}"
        );
    }

    #[test]
    fn entries_may_start_mid_log_before_the_mark_that_covers_them() {
        // What is left after releasing segments: an old mark repeated at the
        // head of the oldest segment, entries from well after it, and the
        // newest mark later on.
        let r = fold([
            Record::SnapshotMark { index: 10, term: 1 },
            entry(50, 1),
            entry(51, 1),
            Record::SnapshotMark { index: 10, term: 1 },
            entry(52, 1),
            Record::SnapshotMark { index: 50, term: 1 },
            entry(53, 1),
        ])
        .unwrap();
        assert_eq!(ids(&r), [(51, 1), (52, 1), (53, 1)]);
    }

    #[test]
    fn entries_that_never_reach_back_to_the_mark_are_an_error() {
        let (at, err) = fold_at([
            Record::SnapshotMark { index: 10, term: 1 },
            entry(50, 1),
            entry(51, 1),
        ])
        .unwrap_err();
        assert_eq!(at, 1);
        assert!(
            err.contains("entry 50 follows the snapshot mark at 10"),
            "{err}"
        );
    }

    #[test]
    fn differing_metadata_is_an_error() {
        let err = fold([
            Record::Metadata(b"m1".to_vec()),
            Record::Metadata(b"m2".to_vec()),
        ])
        .unwrap_err();
        assert!(err.contains("metadata"), "{err}");
    }
}
