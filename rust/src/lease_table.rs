//! The replicated lease table: which leases exist and their granted TTL.
//! Which keys are attached is the store's to know (`Store::keys_with_lease`);
//! expiry deadlines are not replicated at all: the Python lessor on the leader
//! owns them, as etcd's lessor does.

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct LeaseTable {
    ttls: BTreeMap<i64, i64>,
}

impl LeaseTable {
    pub fn exists(&self, id: i64) -> bool {
        self.ttls.contains_key(&id)
    }

    /// The granted TTL, if the lease exists.
    pub fn ttl(&self, id: i64) -> Option<i64> {
        self.ttls.get(&id).copied()
    }

    /// False when the id is taken.
    pub fn grant(&mut self, id: i64, ttl: i64) -> bool {
        if self.ttls.contains_key(&id) {
            return false;
        }
        self.ttls.insert(id, ttl);
        true
    }

    /// False when there was no such lease.
    pub fn revoke(&mut self, id: i64) -> bool {
        self.ttls.remove(&id).is_some()
    }

    /// How many leases exist.
    pub fn len(&self) -> usize {
        self.ttls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ttls.is_empty()
    }

    /// (id, granted TTL) in id order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ttls.iter().map(|(id, ttl)| (*id, *ttl))
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
}
