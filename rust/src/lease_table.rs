//! The replicated lease table: which leases exist, their granted TTL and the
//! remaining TTL last checkpointed (0: none). Which keys are attached is the
//! store's to know (`Store::keys_with_lease`); expiry deadlines are not
//! replicated at all: the lessor on the leader owns them, as etcd's does
//! (see [`crate::lessor`]).

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Entry {
    ttl: i64,
    remaining_ttl: i64,
}

#[derive(Clone, Debug, Default)]
pub struct LeaseTable {
    leases: BTreeMap<i64, Entry>,
}

impl LeaseTable {
    pub fn exists(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// The granted TTL, if the lease exists.
    pub fn ttl(&self, id: i64) -> Option<i64> {
        self.leases.get(&id).map(|e| e.ttl)
    }

    /// The checkpointed remaining TTL (0: none), if the lease exists.
    pub fn remaining_ttl(&self, id: i64) -> Option<i64> {
        self.leases.get(&id).map(|e| e.remaining_ttl)
    }

    /// False when the id is taken.
    pub fn grant(&mut self, id: i64, ttl: i64) -> bool {
        self.restore(id, ttl, 0)
    }

    /// Takes in a lease as it was persisted; false when the id is taken.
    pub fn restore(&mut self, id: i64, ttl: i64, remaining_ttl: i64) -> bool {
        if self.leases.contains_key(&id) {
            return false;
        }
        self.leases.insert(id, Entry { ttl, remaining_ttl });
        true
    }

    /// Records a checkpoint; returns the granted TTL, None when there is no
    /// such lease.
    pub fn checkpoint(&mut self, id: i64, remaining_ttl: i64) -> Option<i64> {
        let e = self.leases.get_mut(&id)?;
        e.remaining_ttl = remaining_ttl;
        Some(e.ttl)
    }

    /// False when there was no such lease.
    pub fn revoke(&mut self, id: i64) -> bool {
        self.leases.remove(&id).is_some()
    }

    /// How many leases exist.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// (id, granted TTL) in id order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.leases.iter().map(|(id, e)| (*id, e.ttl))
    }

    /// (id, granted TTL, checkpointed remaining TTL) in id order.
    pub fn iter_full(&self) -> impl Iterator<Item = (i64, i64, i64)> + '_ {
        self.leases
            .iter()
            .map(|(id, e)| (*id, e.ttl, e.remaining_ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_of_existing_id_is_refused() {
        let mut t = LeaseTable::default();
        assert!(t.grant(7, 60));
        assert!(!t.grant(7, 30));
        assert_eq!(t.ttl(7), Some(60));
    }

    #[test]
    fn revoke_forgets_the_lease() {
        let mut t = LeaseTable::default();
        t.grant(7, 60);
        assert!(t.revoke(7));
        assert!(!t.exists(7));
        assert!(!t.revoke(7));
    }

    #[test]
    fn checkpoint_records_the_remaining_ttl_of_an_existing_lease_only() {
        let mut t = LeaseTable::default();
        t.grant(7, 600);
        assert_eq!(t.remaining_ttl(7), Some(0));
        assert_eq!(t.checkpoint(7, 300), Some(600));
        assert_eq!(t.iter_full().collect::<Vec<_>>(), vec![(7, 600, 300)]);
        assert_eq!(t.checkpoint(8, 300), None);
        assert!(!t.exists(8));
    }
}
