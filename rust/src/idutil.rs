//! Request and lease ids laid out as etcd's idutil lays them out: the member
//! id's low 16 bits, then the start time in milliseconds (40 bits), then an
//! 8-bit counter that carries into the time. Ids never repeat on one member,
//! across its restarts (the clock moved on) or between members (the prefix).
//!
//! etcd draws both Raft request ids and the ids of leases granted without one
//! from the same generator; so does etcdcore.

use std::sync::atomic::{AtomicU64, Ordering};

const SUFFIX_BITS: u32 = 48;
const SUFFIX_MASK: u64 = (1 << SUFFIX_BITS) - 1;

#[derive(Debug)]
pub struct IdGenerator {
    prefix: u64,
    suffix: AtomicU64,
}

impl IdGenerator {
    /// A generator for `member_id` started at `unix_millis`.
    pub fn new(member_id: u64, unix_millis: u64) -> IdGenerator {
        IdGenerator {
            prefix: (member_id & 0xffff) << SUFFIX_BITS,
            suffix: AtomicU64::new((unix_millis & 0xff_ffff_ffff) << 8),
        }
    }

    /// A generator for `member_id` started now.
    pub fn starting_now(member_id: u64) -> IdGenerator {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        IdGenerator::new(member_id, millis)
    }

    /// The next id.
    pub fn next(&self) -> u64 {
        let suffix = self.suffix.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        self.prefix | (suffix & SUFFIX_MASK)
    }

    /// The next id as a lease id: positive (etcd masks off the sign bit),
    /// never 0 (0 means "no lease"), and not one `taken` says exists (a
    /// client may have granted it explicitly; etcd would fail the grant).
    pub fn next_lease_id(&self, taken: impl Fn(i64) -> bool) -> i64 {
        loop {
            let id = (self.next() & (u64::MAX >> 1)) as i64;
            if id != 0 && !taken(id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_member_prefix_and_count_up_from_the_start_time() {
        let g = IdGenerator::new(0x1234_abcd, 5);
        let first = g.next();
        assert_eq!(first >> 48, 0xabcd);
        assert_eq!(first & SUFFIX_MASK, (5 << 8) + 1);
        assert_eq!(g.next(), first + 1);
    }

    #[test]
    fn lease_ids_are_positive_distinct_and_never_zero() {
        let g = IdGenerator::new(u64::MAX, 1);
        let ids: std::collections::HashSet<i64> =
            (0..10_000).map(|_| g.next_lease_id(|_| false)).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| *id > 0));
    }

    #[test]
    fn a_lease_id_that_would_be_zero_is_skipped() {
        // Member prefix 0x8000 is the sign bit alone: masked, the id is the
        // suffix, which wraps to 0 after 2^48 ids.
        let g = IdGenerator {
            prefix: 0x8000 << SUFFIX_BITS,
            suffix: AtomicU64::new(SUFFIX_MASK),
        };
        assert_eq!(g.next_lease_id(|_| false), 1);
    }

    #[test]
    fn a_lease_id_that_is_taken_is_skipped() {
        let g = IdGenerator::new(3, 9);
        let taken = IdGenerator::new(3, 9).next() as i64;
        let id = g.next_lease_id(|id| id == taken);
        assert_eq!(id, taken + 1);
    }

    #[test]
    fn generators_of_two_members_never_meet() {
        let a = IdGenerator::new(1, 1000);
        let b = IdGenerator::new(2, 1000);
        assert_ne!(a.next(), b.next());
    }
}
