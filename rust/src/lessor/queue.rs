//! The lease queue: lease ids ordered by a deadline, soonest first (etcd's
//! LeaseQueue behind its LeaseExpiredNotifier). A binary min-heap that knows
//! where each id sits, so adding, moving and removing one lease are O(log N)
//! and the soonest deadline is O(1).

use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug, Default)]
pub struct LeaseQueue {
    heap: Vec<(Instant, i64)>,
    /// Where each id is in `heap`.
    slots: HashMap<i64, usize>,
}

impl LeaseQueue {
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn clear(&mut self) {
        self.heap.clear();
        self.slots.clear();
    }

    /// The deadline `id` is queued at.
    pub fn deadline(&self, id: i64) -> Option<Instant> {
        self.slots.get(&id).map(|&i| self.heap[i].0)
    }

    /// Queues `id` at `at`, or moves it there if it is queued already.
    pub fn set(&mut self, id: i64, at: Instant) {
        match self.slots.get(&id) {
            Some(&i) => {
                let before = self.heap[i].0;
                self.heap[i].0 = at;
                if at < before {
                    self.up(i);
                } else {
                    self.down(i);
                }
            }
            None => {
                self.heap.push((at, id));
                let i = self.heap.len() - 1;
                self.slots.insert(id, i);
                self.up(i);
            }
        }
    }

    /// Takes `id` out of the queue; false when it was not queued.
    pub fn remove(&mut self, id: i64) -> bool {
        let Some(i) = self.slots.remove(&id) else {
            return false;
        };
        let last = self.heap.len() - 1;
        if i != last {
            self.heap.swap(i, last);
            self.slots.insert(self.heap[i].1, i);
        }
        self.heap.pop();
        if i < self.heap.len() {
            self.down(i);
            self.up(i);
        }
        true
    }

    /// The soonest (deadline, id).
    pub fn peek(&self) -> Option<(Instant, i64)> {
        self.heap.first().copied()
    }

    /// Takes the soonest (deadline, id) out.
    pub fn pop(&mut self) -> Option<(Instant, i64)> {
        let top = self.peek()?;
        self.remove(top.1);
        Some(top)
    }

    fn up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[parent] <= self.heap[i] {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn down(&mut self, mut i: usize) {
        loop {
            let (left, right) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if left < self.heap.len() && self.heap[left] < self.heap[least] {
                least = left;
            }
            if right < self.heap.len() && self.heap[right] < self.heap[least] {
                least = right;
            }
            if least == i {
                return;
            }
            self.swap(i, least);
            i = least;
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.slots.insert(self.heap[a].1, a);
        self.slots.insert(self.heap[b].1, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(base: Instant, secs: u64) -> Instant {
        base + Duration::from_secs(secs)
    }

    /// Pops everything: (seconds after `base`, id), soonest first.
    fn drain(q: &mut LeaseQueue, base: Instant) -> Vec<(u64, i64)> {
        std::iter::from_fn(|| q.pop())
            .map(|(t, id)| ((t - base).as_secs(), id))
            .collect()
    }

    #[test]
    fn pops_in_deadline_order_ties_by_id() {
        let base = Instant::now();
        let mut q = LeaseQueue::default();
        for (id, secs) in [(5, 30), (1, 10), (9, 20), (2, 10), (7, 40)] {
            q.set(id, at(base, secs));
        }
        assert_eq!(
            drain(&mut q, base),
            vec![(10, 1), (10, 2), (20, 9), (30, 5), (40, 7)]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn setting_a_queued_id_moves_it_either_way() {
        let base = Instant::now();
        let mut q = LeaseQueue::default();
        for id in 1..=5 {
            q.set(id, at(base, id as u64 * 10));
        }
        q.set(5, at(base, 1));
        q.set(1, at(base, 100));
        assert_eq!(q.len(), 5);
        assert_eq!(q.deadline(1), Some(at(base, 100)));
        assert_eq!(
            drain(&mut q, base),
            vec![(1, 5), (20, 2), (30, 3), (40, 4), (100, 1)]
        );
    }

    #[test]
    fn removing_from_the_middle_keeps_the_order() {
        let base = Instant::now();
        let mut q = LeaseQueue::default();
        for id in 0..100 {
            q.set(id, at(base, (id as u64 * 37) % 101));
        }
        for id in (0..100).step_by(3) {
            assert!(q.remove(id));
        }
        assert!(!q.remove(0));
        let order = drain(&mut q, base);
        assert_eq!(order.len(), 66);
        assert!(order.windows(2).all(|w| w[0] <= w[1]));
        assert!(order.iter().all(|(_, id)| id % 3 != 0));
    }

    #[test]
    fn matches_a_sorted_model_under_random_operations() {
        let base = Instant::now();
        let mut q = LeaseQueue::default();
        let mut model: HashMap<i64, u64> = HashMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = (x % 500) as i64;
            let secs = (x >> 20) % 1000;
            if x.is_multiple_of(4) {
                assert_eq!(q.remove(id), model.remove(&id).is_some());
            } else {
                q.set(id, at(base, secs));
                model.insert(id, secs);
            }
            if x.is_multiple_of(97) {
                let soonest = model.iter().map(|(id, s)| (*s, *id)).min();
                assert_eq!(q.peek().map(|(t, id)| ((t - base).as_secs(), id)), soonest);
            }
        }
        let mut expected: Vec<(u64, i64)> = model.iter().map(|(id, s)| (*s, *id)).collect();
        expected.sort();
        assert_eq!(drain(&mut q, base), expected);
    }
}
