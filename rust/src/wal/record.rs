//! The framing of one WAL record on disk:
//!
//! ```text
//! [u32 LE payload length][u32 LE crc32c(type byte ++ payload)][u8 type][payload]
//! ```
//!
//! The checksum covers the type byte so that a flipped type cannot turn a
//! record into a different, still "valid" kind.

use std::fmt;

/// Bytes before the payload: length, checksum, type.
pub const HEADER_LEN: usize = 9;

/// No honest record comes near this; a length above it is a damaged header,
/// and trusting it would make replay allocate or skip gigabytes.
pub const MAX_PAYLOAD: usize = 64 << 20;

// Zero is deliberately not a type: a zero-filled region must never decode.
const TYPE_METADATA: u8 = 1;
const TYPE_ENTRY: u8 = 2;
const TYPE_HARD_STATE: u8 = 3;
const TYPE_SNAPSHOT_MARK: u8 = 4;

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Opaque bytes given when the WAL was created (who this member is).
    /// Each segment begins with one.
    Metadata(Vec<u8>),
    /// One raft log entry; `data` is the encoded raft `Entry`, opaque here.
    Entry {
        index: u64,
        term: u64,
        data: Vec<u8>,
    },
    /// An encoded raft `HardState`; the last one replayed wins.
    HardState(Vec<u8>),
    /// A snapshot at (index, term) is durable elsewhere, so entries up to
    /// `index` are no longer needed.
    SnapshotMark { index: u64, term: u64 },
}

/// Why the bytes at some offset are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The header or payload runs past the end of the data: the signature of
    /// a write cut short by a crash.
    Truncated,
    /// The payload or type byte does not match the stored checksum.
    BadChecksum { stored: u32, computed: u32 },
    /// The checksum holds but the type is unknown (or the record is for a
    /// newer format).
    BadType(u8),
    /// The length field is beyond [`MAX_PAYLOAD`].
    AbsurdLength(u32),
    /// The checksum holds but the payload has the wrong size for its type.
    Malformed { kind: &'static str, len: usize },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("record truncated"),
            DecodeError::BadChecksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
            ),
            DecodeError::BadType(t) => write!(f, "unknown record type {t}"),
            DecodeError::AbsurdLength(n) => {
                write!(f, "absurd record length {n} (at most {MAX_PAYLOAD})")
            }
            DecodeError::Malformed { kind, len } => {
                write!(f, "{kind} record with a {len}-byte payload")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// A record's payload would not fit the framing (over [`MAX_PAYLOAD`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    pub kind: &'static str,
    pub len: usize,
}

// One function per kind rather than `Record::encode`: callers hold borrowed
// bytes (the raft Ready loop's encoded entries) and should not have to copy
// them into an owned `Record` just to write them.

pub fn encode_metadata(buf: &mut Vec<u8>, metadata: &[u8]) -> Result<(), TooLarge> {
    frame(buf, TYPE_METADATA, "metadata", &[metadata])
}

pub fn encode_entry(buf: &mut Vec<u8>, index: u64, term: u64, data: &[u8]) -> Result<(), TooLarge> {
    frame(
        buf,
        TYPE_ENTRY,
        "entry",
        &[&index.to_le_bytes(), &term.to_le_bytes(), data],
    )
}

pub fn encode_hard_state(buf: &mut Vec<u8>, hard_state: &[u8]) -> Result<(), TooLarge> {
    frame(buf, TYPE_HARD_STATE, "hard state", &[hard_state])
}

pub fn encode_snapshot_mark(buf: &mut Vec<u8>, index: u64, term: u64) {
    frame(
        buf,
        TYPE_SNAPSHOT_MARK,
        "snapshot mark",
        &[&index.to_le_bytes(), &term.to_le_bytes()],
    )
    .expect("a 16-byte payload always fits");
}

fn frame(buf: &mut Vec<u8>, ty: u8, kind: &'static str, parts: &[&[u8]]) -> Result<(), TooLarge> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > MAX_PAYLOAD {
        return Err(TooLarge { kind, len });
    }
    let mut crc = crc32c::crc32c(&[ty]);
    for p in parts {
        crc = crc32c::crc32c_append(crc, p);
    }
    buf.reserve(HEADER_LEN + len);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.push(ty);
    for p in parts {
        buf.extend_from_slice(p);
    }
    Ok(())
}

/// Where the record starting at `data` ends by its own length field, if the
/// header is all there. Says nothing about whether the record is intact.
pub fn framed_len(data: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(data.get(0..4)?.try_into().unwrap());
    (data.len() >= HEADER_LEN).then_some(HEADER_LEN + len as usize)
}

/// Decodes the record at the start of `data`, returning it and how many bytes
/// it took.
pub fn decode(data: &[u8]) -> Result<(Record, usize), DecodeError> {
    if data.len() < HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    let len32 = u32::from_le_bytes(data[0..4].try_into().unwrap());
    let stored = u32::from_le_bytes(data[4..8].try_into().unwrap());
    let ty = data[8];
    // Checked before the truncation test: a garbage length must read as
    // corruption, not as a torn write that repair would silently cut away.
    if len32 as usize > MAX_PAYLOAD {
        return Err(DecodeError::AbsurdLength(len32));
    }
    let total = HEADER_LEN + len32 as usize;
    if data.len() < total {
        return Err(DecodeError::Truncated);
    }
    let payload = &data[HEADER_LEN..total];
    let computed = crc32c::crc32c_append(crc32c::crc32c(&[ty]), payload);
    if computed != stored {
        return Err(DecodeError::BadChecksum { stored, computed });
    }
    let record = match ty {
        TYPE_METADATA => Record::Metadata(payload.to_vec()),
        TYPE_ENTRY => {
            let (index, term) = index_term(payload, "entry", |n| n >= 16)?;
            Record::Entry {
                index,
                term,
                data: payload[16..].to_vec(),
            }
        }
        TYPE_HARD_STATE => Record::HardState(payload.to_vec()),
        TYPE_SNAPSHOT_MARK => {
            let (index, term) = index_term(payload, "snapshot mark", |n| n == 16)?;
            Record::SnapshotMark { index, term }
        }
        other => return Err(DecodeError::BadType(other)),
    };
    Ok((record, total))
}

fn index_term(
    payload: &[u8],
    kind: &'static str,
    size_ok: impl Fn(usize) -> bool,
) -> Result<(u64, u64), DecodeError> {
    if !size_ok(payload.len()) {
        return Err(DecodeError::Malformed {
            kind,
            len: payload.len(),
        });
    }
    let index = u64::from_le_bytes(payload[0..8].try_into().unwrap());
    let term = u64::from_le_bytes(payload[8..16].try_into().unwrap());
    Ok((index, term))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        vec![
            Record::Metadata(b"member 1".to_vec()),
            Record::Metadata(Vec::new()),
            Record::Entry {
                index: 7,
                term: 3,
                data: b"put foo bar".to_vec(),
            },
            Record::Entry {
                index: u64::MAX,
                term: u64::MAX,
                data: Vec::new(),
            },
            Record::HardState(vec![1, 2, 3]),
            Record::SnapshotMark { index: 42, term: 5 },
        ]
    }

    fn encode(r: &Record, buf: &mut Vec<u8>) {
        match r {
            Record::Metadata(m) => encode_metadata(buf, m).unwrap(),
            Record::Entry { index, term, data } => encode_entry(buf, *index, *term, data).unwrap(),
            Record::HardState(hs) => encode_hard_state(buf, hs).unwrap(),
            Record::SnapshotMark { index, term } => encode_snapshot_mark(buf, *index, *term),
        }
    }

    fn encoded(r: &Record) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(r, &mut buf);
        buf
    }

    #[test]
    fn every_kind_round_trips() {
        for r in samples() {
            let buf = encoded(&r);
            assert_eq!(decode(&buf), Ok((r, buf.len())));
        }
    }

    #[test]
    fn decode_reads_only_the_first_of_consecutive_records() {
        let mut buf = Vec::new();
        for r in samples() {
            encode(&r, &mut buf);
        }
        let mut at = 0;
        let mut got = Vec::new();
        while at < buf.len() {
            let (r, n) = decode(&buf[at..]).unwrap();
            got.push(r);
            at += n;
        }
        assert_eq!(got, samples());
    }

    #[test]
    fn layout_is_length_checksum_type_payload() {
        let buf = encoded(&Record::Entry {
            index: 1,
            term: 2,
            data: b"x".to_vec(),
        });
        assert_eq!(&buf[0..4], &17u32.to_le_bytes());
        assert_eq!(
            &buf[4..8],
            &crc32c::crc32c(&buf[8..]).to_le_bytes(),
            "crc covers the type byte and the payload"
        );
        assert_eq!(buf[8], TYPE_ENTRY);
        assert_eq!(&buf[9..17], &1u64.to_le_bytes());
        assert_eq!(&buf[17..25], &2u64.to_le_bytes());
        assert_eq!(&buf[25..], b"x");
    }

    #[test]
    fn every_proper_prefix_is_truncated() {
        for r in samples() {
            let buf = encoded(&r);
            for cut in 0..buf.len() {
                assert_eq!(
                    decode(&buf[..cut]),
                    Err(DecodeError::Truncated),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn any_flipped_bit_after_the_length_is_a_checksum_mismatch() {
        let buf = encoded(&Record::Entry {
            index: 9,
            term: 9,
            data: b"payload".to_vec(),
        });
        for at in 4..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[at] ^= 1 << bit;
                assert!(
                    matches!(decode(&bad), Err(DecodeError::BadChecksum { .. })),
                    "flip at byte {at} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn unknown_type_with_a_valid_checksum_is_bad_type() {
        let mut buf = Vec::new();
        frame(&mut buf, 99, "test", &[b"abc"]).unwrap();
        assert_eq!(decode(&buf), Err(DecodeError::BadType(99)));
    }

    #[test]
    fn zero_bytes_never_decode() {
        let zeros = [0u8; 64];
        assert!(matches!(
            decode(&zeros),
            Err(DecodeError::BadChecksum { .. })
        ));
    }

    #[test]
    fn length_over_the_limit_is_absurd_even_when_data_ends_early() {
        let mut buf = encoded(&Record::HardState(vec![0; 4]));
        buf[0..4].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        assert_eq!(
            decode(&buf),
            Err(DecodeError::AbsurdLength(MAX_PAYLOAD as u32 + 1))
        );
    }

    #[test]
    fn payload_too_short_for_its_type_is_malformed() {
        let mut buf = Vec::new();
        frame(&mut buf, TYPE_SNAPSHOT_MARK, "snapshot mark", &[&[0u8; 15]]).unwrap();
        assert_eq!(
            decode(&buf),
            Err(DecodeError::Malformed {
                kind: "snapshot mark",
                len: 15
            })
        );
        let mut buf = Vec::new();
        frame(&mut buf, TYPE_ENTRY, "entry", &[&[0u8; 8]]).unwrap();
        assert!(matches!(decode(&buf), Err(DecodeError::Malformed { .. })));
    }

    #[test]
    fn oversized_payload_is_refused_at_encode_time() {
        let big = vec![0u8; MAX_PAYLOAD + 1];
        let mut buf = Vec::new();
        assert_eq!(
            encode_hard_state(&mut buf, &big),
            Err(TooLarge {
                kind: "hard state",
                len: MAX_PAYLOAD + 1
            })
        );
        assert!(buf.is_empty(), "nothing half-written");
    }
}
