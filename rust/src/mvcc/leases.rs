//! Which live keys carry which lease, kept in step with every write so that
//! lease revoke and TimeToLive need no scan.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseKeys {
    by_key: HashMap<Vec<u8>, i64>,
    by_lease: HashMap<i64, BTreeSet<Vec<u8>>>,
}

impl LeaseKeys {
    /// Records that `key` now carries `lease` (0: none, or the key is gone).
    pub fn set(&mut self, key: &[u8], lease: i64) {
        let old = if lease == 0 {
            self.by_key.remove(key)
        } else {
            self.by_key.insert(key.to_vec(), lease)
        };
        if old == Some(lease) {
            return;
        }
        if let Some(old) = old {
            if let Some(keys) = self.by_lease.get_mut(&old) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_lease.remove(&old);
                }
            }
        }
        if lease != 0 {
            self.by_lease.entry(lease).or_default().insert(key.to_vec());
        }
    }

    /// The lease `key` carries now (0: none).
    pub fn lease_of(&self, key: &[u8]) -> i64 {
        self.by_key.get(key).copied().unwrap_or_default()
    }

    /// Live keys carrying `lease`, in key order.
    pub fn keys(&self, lease: i64) -> Vec<Vec<u8>> {
        self.by_lease
            .get(&lease)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_attaches_key_to_lease() {
        let mut l = LeaseKeys::default();
        l.set(b"b", 7);
        l.set(b"a", 7);
        assert_eq!(l.keys(7), vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn moving_key_to_other_lease_detaches_it() {
        let mut l = LeaseKeys::default();
        l.set(b"a", 7);
        l.set(b"a", 8);
        assert!(l.keys(7).is_empty());
        assert_eq!(l.keys(8), vec![b"a".to_vec()]);
    }

    #[test]
    fn zero_lease_detaches_key() {
        let mut l = LeaseKeys::default();
        l.set(b"a", 7);
        l.set(b"a", 0);
        assert!(l.keys(7).is_empty());
        assert_eq!(l, LeaseKeys::default());
    }
}
