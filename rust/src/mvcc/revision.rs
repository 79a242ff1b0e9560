//! A point in the store's history: the main revision of a write and the
//! position of one change inside it.

/// `main` is the store revision a write produced; `sub` orders the changes
/// made by that one write (a txn touching three keys has subs 0, 1, 2).
/// Ordered by `main`, then `sub`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    /// etcd's on-disk key for this revision: big-endian `main`, `_`,
    /// big-endian `sub`, plus a trailing `t` for a tombstone. HashKV hashes
    /// these bytes, so they must match etcd's byte for byte.
    pub fn to_bytes(self, tombstone: bool) -> Vec<u8> {
        let mut b = Vec::with_capacity(18);
        b.extend_from_slice(&(self.main as u64).to_be_bytes());
        b.push(b'_');
        b.extend_from_slice(&(self.sub as u64).to_be_bytes());
        if tombstone {
            b.push(b't');
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_main_then_sub() {
        assert!(Revision::new(1, 5) < Revision::new(2, 0));
        assert!(Revision::new(2, 0) < Revision::new(2, 1));
        assert_eq!(Revision::new(3, 3), Revision::new(3, 3));
    }

    #[test]
    fn bytes_use_etcd_layout() {
        let b = Revision::new(2, 1).to_bytes(false);
        assert_eq!(b, [0, 0, 0, 0, 0, 0, 0, 2, b'_', 0, 0, 0, 0, 0, 0, 0, 1]);
        let t = Revision::new(2, 1).to_bytes(true);
        assert_eq!(t.len(), 18);
        assert_eq!(t[17], b't');
    }
}
