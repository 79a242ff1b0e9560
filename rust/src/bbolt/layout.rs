//! bbolt's on-disk structures: the page header, leaf and branch elements, the
//! bucket header and the meta page, with the constants that size them.
//!
//! bbolt writes these structs in the host's byte order; every platform etcd
//! ships for is little-endian, so files are read and written little-endian.

/// Marks a bbolt file (the meta page's first field).
pub const MAGIC: u32 = 0xED0C_DAED;
/// The data file format version bbolt 1.3 and 1.4 write and accept.
pub const VERSION: u32 = 2;

/// `id u64, flags u16, count u16, overflow u32` at the start of every page.
pub const PAGE_HEADER_SIZE: usize = 16;
/// `flags u32, pos u32, ksize u32, vsize u32`; `pos` counts from the element.
pub const LEAF_ELEMENT_SIZE: usize = 16;
/// `pos u32, ksize u32, pgid u64`; `pos` counts from the element.
pub const BRANCH_ELEMENT_SIZE: usize = 16;
/// A bucket's value: `root pgid u64, sequence u64` (root 0: inline page follows).
pub const BUCKET_HEADER_SIZE: usize = 16;
/// The meta struct after the page header; its checksum covers the first 56 bytes.
pub const META_SIZE: usize = 64;
const META_SUMMED: usize = 56;

pub const BRANCH_PAGE: u16 = 0x01;
pub const LEAF_PAGE: u16 = 0x02;
pub const META_PAGE: u16 = 0x04;
pub const FREELIST_PAGE: u16 = 0x10;

/// A leaf element whose value is a bucket header (a nested bucket).
pub const BUCKET_LEAF_FLAG: u32 = 0x01;
/// The meta's freelist id when the freelist is not persisted (NoFreelistSync).
pub const NO_FREELIST: u64 = u64::MAX;

/// bbolt refuses longer keys (`MaxKeySize`).
pub const MAX_KEY_SIZE: usize = 32768;
/// bbolt refuses longer values (`MaxValueSize`).
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A page's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    /// Pages that follow this one and belong to it.
    pub overflow: u32,
}

impl PageHeader {
    /// Reads the header at the start of `b` (at least [`PAGE_HEADER_SIZE`] bytes).
    pub fn decode(b: &[u8]) -> PageHeader {
        PageHeader {
            id: u64_at(b, 0),
            flags: u16_at(b, 8),
            count: u16_at(b, 10),
            overflow: u32_at(b, 12),
        }
    }

    pub fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..10].copy_from_slice(&self.flags.to_le_bytes());
        out[10..12].copy_from_slice(&self.count.to_le_bytes());
        out[12..16].copy_from_slice(&self.overflow.to_le_bytes());
    }

    /// bbolt's name for the page type, for error messages.
    pub fn kind(&self) -> String {
        match self.flags {
            BRANCH_PAGE => "branch".into(),
            LEAF_PAGE => "leaf".into(),
            META_PAGE => "meta".into(),
            FREELIST_PAGE => "freelist".into(),
            f => format!("unknown<{f:02x}>"),
        }
    }
}

/// Writes a leaf element header at `out[0..16]`.
pub fn encode_leaf_element(out: &mut [u8], flags: u32, pos: u32, ksize: u32, vsize: u32) {
    out[0..4].copy_from_slice(&flags.to_le_bytes());
    out[4..8].copy_from_slice(&pos.to_le_bytes());
    out[8..12].copy_from_slice(&ksize.to_le_bytes());
    out[12..16].copy_from_slice(&vsize.to_le_bytes());
}

/// Writes a branch element header at `out[0..16]`.
pub fn encode_branch_element(out: &mut [u8], pos: u32, ksize: u32, pgid: u64) {
    out[0..4].copy_from_slice(&pos.to_le_bytes());
    out[4..8].copy_from_slice(&ksize.to_le_bytes());
    out[8..16].copy_from_slice(&pgid.to_le_bytes());
}

/// A bucket header: the value of a bucket's entry in its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketHeader {
    /// The bucket's root page; 0 when the bucket is inline.
    pub root: u64,
    pub sequence: u64,
}

impl BucketHeader {
    pub fn decode(b: &[u8]) -> BucketHeader {
        BucketHeader {
            root: u64_at(b, 0),
            sequence: u64_at(b, 8),
        }
    }

    pub fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.root.to_le_bytes());
        out[8..16].copy_from_slice(&self.sequence.to_le_bytes());
    }
}

/// The meta page's contents: where the tree and the freelist are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub magic: u32,
    pub version: u32,
    pub page_size: u32,
    pub flags: u32,
    /// The root bucket: its entries are the top-level buckets.
    pub root: BucketHeader,
    /// The freelist's page, or [`NO_FREELIST`].
    pub freelist: u64,
    /// The high-water mark: pages in use, so the file's used size in pages.
    pub pgid: u64,
    pub txid: u64,
    pub checksum: u64,
}

impl Meta {
    /// A meta for a new file, its checksum set.
    pub fn new(page_size: u32, root: u64, freelist: u64, pgid: u64, txid: u64) -> Meta {
        let mut m = Meta {
            magic: MAGIC,
            version: VERSION,
            page_size,
            flags: 0,
            root: BucketHeader { root, sequence: 0 },
            freelist,
            pgid,
            txid,
            checksum: 0,
        };
        m.checksum = m.sum64();
        m
    }

    /// Reads a meta from the [`META_SIZE`] bytes after a meta page's header.
    pub fn decode(b: &[u8]) -> Meta {
        Meta {
            magic: u32_at(b, 0),
            version: u32_at(b, 4),
            page_size: u32_at(b, 8),
            flags: u32_at(b, 12),
            root: BucketHeader::decode(&b[16..32]),
            freelist: u64_at(b, 32),
            pgid: u64_at(b, 40),
            txid: u64_at(b, 48),
            checksum: u64_at(b, 56),
        }
    }

    pub fn encode(&self) -> [u8; META_SIZE] {
        let mut b = [0u8; META_SIZE];
        b[0..4].copy_from_slice(&self.magic.to_le_bytes());
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        self.root.encode(&mut b[16..32]);
        b[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        b[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        b[48..56].copy_from_slice(&self.txid.to_le_bytes());
        b[56..64].copy_from_slice(&self.checksum.to_le_bytes());
        b
    }

    /// bbolt's checksum: FNV-1a 64 of the fields before `checksum`.
    pub fn sum64(&self) -> u64 {
        fnv1a64(&self.encode()[..META_SUMMED])
    }

    /// Why bbolt would refuse this meta (its `Validate`), if it would.
    pub fn invalid(&self) -> Option<String> {
        if self.magic != MAGIC {
            Some(format!(
                "bad magic {:#010x} (want {MAGIC:#010x})",
                self.magic
            ))
        } else if self.version != VERSION {
            Some(format!("version {} (want {VERSION})", self.version))
        } else if self.checksum != self.sum64() {
            Some(format!(
                "checksum {:#018x} does not match its contents ({:#018x})",
                self.checksum,
                self.sum64()
            ))
        } else {
            None
        }
    }
}

/// 64-bit FNV-1a, as Go's hash/fnv New64a.
pub fn fnv1a64(data: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    data.iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_go_hash_fnv() {
        // Values from Go: fnv.New64a() over "" and "a".
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn meta_round_trips_and_validates() {
        let m = Meta::new(4096, 3, 2, 4, 7);
        let back = Meta::decode(&m.encode());
        assert_eq!(back, m);
        assert_eq!(back.invalid(), None);
        let mut bad = m;
        bad.pgid = 5;
        assert!(bad.invalid().unwrap().contains("checksum"));
    }
}
