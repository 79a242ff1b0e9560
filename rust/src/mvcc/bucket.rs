//! etcd's `key` bucket as the store sees it: every surviving version of every
//! key, by revision, tombstones marked. The values live in the backend (on
//! disk); the store's index only says which revision to read.
//!
//! Entries use etcd's bytes exactly: the key is the 17-byte revision
//! ([`Revision::to_bytes`], plus `t` for a tombstone) and the value an encoded
//! `mvccpb.KeyValue` — for a tombstone one holding only the key. HashKV and
//! the snapshot format depend on that.

use prost::Message;

use super::error::MvccError;
use super::revision::Revision;
use crate::pb::mvccpb::KeyValue;

/// One entry as a scan meets it: its revision, whether it is a tombstone, and
/// the encoded KeyValue.
pub type ScanVisitor<'v> = dyn FnMut(Revision, bool, &[u8]) -> Result<bool, MvccError> + 'v;

/// Reading the key bucket.
pub trait KeyBucket {
    /// The version a put wrote at `rev` (never a tombstone: the index only
    /// points readers at puts).
    fn get(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError>;

    /// Visits every entry with `from <= revision` and `revision.main <=
    /// to_main`, in revision order, while `visit` returns true.
    fn scan(
        &self,
        from: Revision,
        to_main: i64,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), MvccError>;
}

/// Writing the key bucket (inside the applier's write transaction).
pub trait KeyBucketMut: KeyBucket {
    fn insert(&mut self, rev: Revision, tombstone: bool, kv: &KeyValue) -> Result<(), MvccError>;
    fn remove(&mut self, rev: Revision, tombstone: bool) -> Result<(), MvccError>;
}

/// What a tombstone stores: etcd keeps only the key.
pub fn tombstone_value(key: &[u8]) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        ..Default::default()
    }
}

/// Decodes a stored value; `rev` only names it in the error.
pub fn decode_kv(rev: Revision, bytes: &[u8]) -> Result<KeyValue, MvccError> {
    KeyValue::decode(bytes)
        .map_err(|e| MvccError::Corrupt(format!("key bucket entry {rev:?} is unreadable: {e}")))
}

/// The fields of a stored KeyValue that rebuilding the index needs, read
/// without copying the value (a start-up scan meets every version once).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KvHeader<'a> {
    pub key: &'a [u8],
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

impl<'a> KvHeader<'a> {
    /// Parses protobuf wire format for `mvccpb.KeyValue` (fields 1..6);
    /// unknown fields are skipped as protobuf requires.
    pub fn parse(bytes: &'a [u8]) -> Result<KvHeader<'a>, String> {
        let mut h = KvHeader::default();
        let mut at = 0;
        while at < bytes.len() {
            let tag = varint(bytes, &mut at)?;
            let (field, wire) = (tag >> 3, tag & 7);
            match wire {
                0 => {
                    let v = varint(bytes, &mut at)? as i64;
                    match field {
                        2 => h.create_revision = v,
                        3 => h.mod_revision = v,
                        4 => h.version = v,
                        6 => h.lease = v,
                        _ => {}
                    }
                }
                2 => {
                    let len = varint(bytes, &mut at)? as usize;
                    let end = at
                        .checked_add(len)
                        .filter(|&e| e <= bytes.len())
                        .ok_or_else(|| format!("field {field} runs past the end"))?;
                    if field == 1 {
                        h.key = &bytes[at..end];
                    }
                    at = end;
                }
                1 => at += 8,
                5 => at += 4,
                w => return Err(format!("unsupported wire type {w} for field {field}")),
            }
        }
        if at > bytes.len() {
            return Err("truncated fixed-size field".into());
        }
        Ok(h)
    }
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at).ok_or("truncated varint")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

/// A key bucket in memory, for the store's unit tests.
#[cfg(test)]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemBucket {
    entries: std::collections::BTreeMap<Revision, (bool, Vec<u8>)>,
}

#[cfg(test)]
impl MemBucket {
    /// Every revision held, oldest first.
    pub fn revisions(&self) -> Vec<Revision> {
        self.entries.keys().copied().collect()
    }
}

#[cfg(test)]
impl KeyBucket for MemBucket {
    fn get(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError> {
        match self.entries.get(&rev) {
            Some((false, bytes)) => decode_kv(rev, bytes).map(Some),
            _ => Ok(None),
        }
    }

    fn scan(
        &self,
        from: Revision,
        to_main: i64,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), MvccError> {
        for (rev, (tomb, bytes)) in self.entries.range(from..) {
            if rev.main > to_main || !visit(*rev, *tomb, bytes)? {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
impl KeyBucketMut for MemBucket {
    fn insert(&mut self, rev: Revision, tombstone: bool, kv: &KeyValue) -> Result<(), MvccError> {
        self.entries.insert(rev, (tombstone, kv.encode_to_vec()));
        Ok(())
    }

    fn remove(&mut self, rev: Revision, _tombstone: bool) -> Result<(), MvccError> {
        self.entries.remove(&rev);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parse_reads_what_prost_wrote() {
        let kv = KeyValue {
            key: b"some/key".to_vec(),
            create_revision: 7,
            mod_revision: 1 << 40,
            version: 3,
            value: vec![9; 300],
            lease: -5,
        };
        let bytes = kv.encode_to_vec();
        let h = KvHeader::parse(&bytes).unwrap();
        assert_eq!(
            h,
            KvHeader {
                key: b"some/key",
                create_revision: 7,
                mod_revision: 1 << 40,
                version: 3,
                lease: -5,
            }
        );
    }

    #[test]
    fn header_parse_of_tombstone_value_has_only_the_key() {
        let bytes = tombstone_value(b"k").encode_to_vec();
        let h = KvHeader::parse(&bytes).unwrap();
        assert_eq!((h.key, h.mod_revision, h.version), (&b"k"[..], 0, 0));
    }

    #[test]
    fn header_parse_refuses_truncated_input_without_panicking() {
        let bytes = KeyValue {
            key: b"abc".to_vec(),
            value: b"value".to_vec(),
            version: 300,
            ..Default::default()
        }
        .encode_to_vec();
        for cut in 1..bytes.len() {
            let _ = KvHeader::parse(&bytes[..cut]);
        }
        assert!(KvHeader::parse(&bytes[..bytes.len() - 1]).is_err());
        assert!(KvHeader::parse(&[0x80; 11]).is_err());
    }
}
