//! The lessor's rules, with time passed in explicitly (no clock, no Raft).
//! Expected behaviour follows etcd 3.5's server/lease/lessor.go.

use super::*;

const SEC: Duration = Duration::from_secs(1);

fn secs(n: f64) -> Duration {
    Duration::from_secs_f64(n)
}

fn lessor_with(checkpoint_interval: Option<Duration>) -> Lessor {
    Lessor::new(
        LessorConfig {
            min_ttl: 2,
            checkpoint_interval,
        },
        [],
    )
}

/// A primary lessor promoted at `t0` with no extension.
fn primary(t0: Instant) -> Lessor {
    let l = lessor_with(None);
    l.promote(Duration::ZERO, t0, || true);
    l
}

fn grant(l: &Lessor, id: i64, ttl: i64, now: Instant) {
    l.apply(&[LeaseChange::Granted { id, ttl }], now);
}

fn remaining(l: &Lessor, id: i64, now: Instant) -> i64 {
    l.lookup(id, now).expect("lease exists").remaining
}

fn renewed(r: Renewal) -> Option<i64> {
    match r {
        Renewal::Renewed(ttl) => Some(ttl),
        _ => None,
    }
}

// -- configuration ------------------------------------------------------------------

#[test]
fn minimum_ttl_is_one_and_a_half_election_timeouts_rounded_up() {
    let hb = Duration::from_millis(100);
    assert_eq!(LessorConfig::min_ttl_for(10, hb), 2);
    assert_eq!(LessorConfig::min_ttl_for(30, hb), 5);
    assert_eq!(LessorConfig::min_ttl_for(1, hb), 1);
    // etcd counts whole ticks: 11 ticks -> 16 ticks -> 1.6 s -> 2.
    assert_eq!(LessorConfig::min_ttl_for(11, hb), 2);
}

// -- grant, renew, lookup -----------------------------------------------------------

#[test]
fn a_lease_granted_on_a_follower_has_no_deadline() {
    let t0 = Instant::now();
    let l = lessor_with(None);
    grant(&l, 7, 10, t0);
    assert_eq!(
        l.lookup(7, t0 + secs(100.0)),
        Some(LeaseView {
            granted_ttl: 10,
            remaining: 10
        })
    );
    assert!(l.expired(t0 + secs(100.0), 10).is_empty());
}

#[test]
fn remaining_is_truncated_toward_zero() {
    let t0 = Instant::now();
    let l = primary(t0);
    grant(&l, 7, 10, t0);
    assert_eq!(remaining(&l, 7, t0 + secs(3.5)), 6);
    // 0.4 s overdue, not yet revoked.
    assert_eq!(remaining(&l, 7, t0 + secs(10.4)), 0);
    assert_eq!(remaining(&l, 7, t0 + secs(12.5)), -2);
}

#[test]
fn keep_alive_renews_to_the_full_ttl() {
    let t0 = Instant::now();
    let l = primary(t0);
    grant(&l, 7, 10, t0);
    assert_eq!(remaining(&l, 7, t0 + secs(8.0)), 2);
    assert_eq!(renewed(l.renew(7, t0 + secs(8.0), false)), Some(10));
    assert_eq!(remaining(&l, 7, t0 + secs(8.0)), 10);
    assert!(l.expired(t0 + secs(12.0), 10).is_empty());
    assert_eq!(l.expired(t0 + secs(18.0), 10), vec![7]);
}

#[test]
fn keep_alive_of_an_unknown_lease_is_not_found() {
    let l = primary(Instant::now());
    assert!(matches!(
        l.renew(42, Instant::now(), false),
        Renewal::NotFound
    ));
}

#[test]
fn keep_alive_on_a_lessor_that_is_not_primary_is_refused() {
    let t0 = Instant::now();
    let l = lessor_with(None);
    grant(&l, 7, 10, t0);
    assert!(matches!(l.renew(7, t0, false), Renewal::NotPrimary));
    let answers = l.renew_many(&[7, 8], t0);
    assert!(answers.iter().all(|a| matches!(a, Renewal::NotPrimary)));
}

#[test]
fn keep_alive_of_an_expired_lease_waits_for_its_revocation() {
    let t0 = Instant::now();
    let l = primary(t0);
    grant(&l, 7, 10, t0);
    let Renewal::Expired(mut rx) = l.renew(7, t0 + secs(10.0), false) else {
        panic!("an expired lease is not renewed");
    };
    assert!(rx.try_recv().is_err());
    l.apply(&[LeaseChange::Revoked(7)], t0 + secs(10.2));
    assert_eq!(rx.try_recv(), Ok(Revocation::Revoked));
}

#[test]
fn keep_alive_waiting_on_an_expired_lease_is_released_by_a_demotion() {
    let t0 = Instant::now();
    let l = primary(t0);
    grant(&l, 7, 10, t0);
    let Renewal::Expired(mut rx) = l.renew(7, t0 + secs(11.0), false) else {
        panic!("an expired lease is not renewed");
    };
    l.demote();
    assert_eq!(rx.try_recv(), Ok(Revocation::Demoted));
}

#[test]
fn many_keep_alives_are_answered_in_order_under_one_lock() {
    let t0 = Instant::now();
    let l = primary(t0);
    grant(&l, 1, 10, t0);
    grant(&l, 2, 20, t0);
    let answers: Vec<Option<i64>> = l
        .renew_many(&[2, 3, 1], t0 + SEC)
        .into_iter()
        .map(|r| match r {
            Renewal::Renewed(ttl) => Some(ttl),
            Renewal::NotFound => Some(0),
            _ => None,
        })
        .collect();
    assert_eq!(answers, vec![Some(20), Some(0), Some(10)]);
}

#[test]
fn leases_are_listed_soonest_expiry_first_then_those_without_deadline_by_id() {
    let t0 = Instant::now();
    let l = primary(t0);
    grant(&l, 5, 100, t0);
    grant(&l, 3, 5, t0);
    grant(&l, 9, 50, t0);
    assert_eq!(l.leases(), vec![3, 9, 5]);
    l.demote();
    assert_eq!(l.leases(), vec![3, 5, 9]);
}

// -- expiry -------------------------------------------------------------------------

#[test]
fn nothing_expires_early() {
    let t0 = Instant::now();
    let l = primary(t0);
    grant(&l, 7, 10, t0);
    assert!(l.expired(t0 + secs(9.9), 10).is_empty());
    assert_eq!(l.expired(t0 + secs(10.0), 10), vec![7]);
}

#[test]
fn expired_leases_are_handed_out_soonest_first_up_to_the_limit() {
    let t0 = Instant::now();
    let l = primary(t0);
    for id in 1..=1200 {
        // Longer ids expire later: 1 at 10 s, 1200 at 10 s + 1199 ms.
        l.apply(
            &[LeaseChange::Granted { id, ttl: 10 }],
            t0 + Duration::from_millis(id as u64),
        );
    }
    let now = t0 + secs(20.0);
    let first = l.expired(now, REVOKE_RATE / 2);
    assert_eq!(first, (1..=500).collect::<Vec<i64>>());
    assert_eq!(l.expired(now, 500), (501..=1000).collect::<Vec<i64>>());
    assert_eq!(l.expired(now, 500), (1001..=1200).collect::<Vec<i64>>());
    assert!(l.expired(now, 500).is_empty());
}

#[test]
fn an_expired_lease_whose_revocation_failed_is_handed_out_again_after_the_retry_interval() {
    let t0 = Instant::now();
    let l = primary(t0);
    grant(&l, 7, 10, t0);
    let found = t0 + secs(11.0);
    assert_eq!(l.expired(found, 10), vec![7]);
    assert!(l.expired(found + secs(1.0), 10).is_empty());
    assert_eq!(l.expired(found + EXPIRED_RETRY, 10), vec![7]);
}

#[test]
fn a_revoked_lease_is_never_handed_out() {
    let t0 = Instant::now();
    let l = primary(t0);
    grant(&l, 7, 10, t0);
    grant(&l, 8, 10, t0);
    l.apply(&[LeaseChange::Revoked(7)], t0 + SEC);
    assert_eq!(l.expired(t0 + secs(11.0), 10), vec![8]);
    assert_eq!(l.len(), 1);
}

#[test]
fn a_follower_hands_out_nothing() {
    let t0 = Instant::now();
    let l = primary(t0);
    grant(&l, 7, 10, t0);
    l.demote();
    assert!(!l.is_primary());
    assert!(l.expired(t0 + secs(100.0), 10).is_empty());
}

// -- leadership ---------------------------------------------------------------------

#[test]
fn promotion_gives_every_lease_its_ttl_plus_the_extension() {
    let t0 = Instant::now();
    let l = primary(t0);
    grant(&l, 7, 10, t0);
    l.demote();
    let t1 = t0 + secs(9.0);
    l.promote(SEC, t1, || true);
    assert_eq!(remaining(&l, 7, t1), 11);
    assert!(l.expired(t1 + secs(10.5), 10).is_empty());
    assert_eq!(l.expired(t1 + secs(11.0), 10), vec![7]);
}

#[test]
fn promotion_is_skipped_when_leadership_was_lost_meanwhile() {
    let l = lessor_with(None);
    l.promote(SEC, Instant::now(), || false);
    assert!(!l.is_primary());
}

#[test]
fn promotion_and_demotion_are_announced() {
    let l = lessor_with(None);
    let role = l.role();
    l.promote(SEC, Instant::now(), || true);
    assert!(*role.borrow());
    l.demote();
    assert!(!*role.borrow());
}

#[test]
fn promotion_spreads_piled_up_expiries() {
    let t0 = Instant::now();
    let l = lessor_with(None);
    for id in 1..=3000 {
        grant(&l, id, 10, t0);
    }
    l.promote(Duration::ZERO, t0, || true);
    // Whole seconds are too coarse here: read the queue's deadlines.
    let mut deadlines = Vec::new();
    let mut s = l.state();
    while let Some((at, _)) = s.deadlines.pop() {
        deadlines.push((at - t0).as_secs_f64());
    }
    drop(s);
    assert!((deadlines[0] - 10.0).abs() < 1e-6);
    let target = 3 * REVOKE_RATE / 4;
    for i in 0..deadlines.len() - target {
        assert!(
            deadlines[i + target] - deadlines[i] >= 0.999,
            "more than {target} expiries within a second at {i}"
        );
    }
}

#[test]
fn a_few_leases_are_not_spread() {
    let t0 = Instant::now();
    let l = lessor_with(None);
    for id in 1..=900 {
        grant(&l, id, 10, t0);
    }
    l.promote(Duration::ZERO, t0, || true);
    assert_eq!(l.expired(t0 + secs(10.0), 1000).len(), 900);
}

#[test]
fn demotion_forgets_every_deadline() {
    let t0 = Instant::now();
    let l = primary(t0);
    grant(&l, 7, 10, t0);
    l.demote();
    assert_eq!(remaining(&l, 7, t0 + secs(50.0)), 10);
}

#[test]
fn recovery_replaces_the_leases_with_the_table() {
    let t0 = Instant::now();
    let l = lessor_with(None);
    grant(&l, 7, 10, t0);
    l.recover([(8, 20, 0), (9, 30, 12)], t0);
    assert!(!l.contains(7));
    assert_eq!(l.get(9), Some((30, 12)));
    assert_eq!(l.len(), 2);
}

// -- checkpoints ----------------------------------------------------------------------

fn checkpointing(t0: Instant) -> Lessor {
    let l = lessor_with(Some(Duration::from_secs(60)));
    l.promote(Duration::ZERO, t0, || true);
    l
}

#[test]
fn a_long_lease_is_checkpointed_every_interval_with_its_remaining_ttl_rounded_up() {
    let t0 = Instant::now();
    let l = checkpointing(t0);
    grant(&l, 7, 600, t0);
    assert!(l.due_checkpoints(t0 + secs(59.0), 10).is_empty());
    let at = t0 + secs(60.5);
    assert_eq!(l.due_checkpoints(at, 10), vec![(7, 540)]);
    // The next one is scheduled once this one is applied.
    assert!(l.due_checkpoints(at + secs(60.0), 10).is_empty());
    l.apply(
        &[LeaseChange::Checkpointed {
            id: 7,
            remaining_ttl: 540,
        }],
        at,
    );
    assert_eq!(l.due_checkpoints(at + secs(60.0), 10), vec![(7, 480)]);
}

#[test]
fn a_lease_shorter_than_the_interval_is_never_checkpointed() {
    let t0 = Instant::now();
    let l = checkpointing(t0);
    grant(&l, 7, 60, t0);
    assert!(l.due_checkpoints(t0 + secs(3600.0), 10).is_empty());
}

#[test]
fn a_lease_renewed_to_its_full_ttl_needs_no_checkpoint() {
    let t0 = Instant::now();
    let l = checkpointing(t0);
    grant(&l, 7, 600, t0);
    assert_eq!(renewed(l.renew(7, t0 + secs(60.0), false)), Some(600));
    assert!(l.due_checkpoints(t0 + secs(60.0), 10).is_empty());
}

#[test]
fn checkpoints_are_handed_out_in_batches() {
    let t0 = Instant::now();
    let l = checkpointing(t0);
    for id in 1..=2500 {
        grant(&l, id, 600, t0);
    }
    let at = t0 + secs(61.0);
    let sizes: Vec<usize> = std::iter::from_fn(|| {
        let due = l.due_checkpoints(at, CHECKPOINT_BATCH);
        (!due.is_empty()).then_some(due.len())
    })
    .collect();
    assert_eq!(sizes, vec![1000, 1000, 500]);
}

#[test]
fn a_checkpointed_lease_must_be_cleared_before_it_is_renewed() {
    let t0 = Instant::now();
    let l = checkpointing(t0);
    grant(&l, 7, 600, t0);
    let cp = |remaining_ttl| LeaseChange::Checkpointed {
        id: 7,
        remaining_ttl,
    };
    l.apply(&[cp(540)], t0 + secs(60.0));
    assert!(matches!(
        l.renew(7, t0 + secs(61.0), false),
        Renewal::ClearCheckpoint
    ));
    l.apply(&[cp(0)], t0 + secs(61.0));
    assert_eq!(renewed(l.renew(7, t0 + secs(61.0), false)), Some(600));
    assert_eq!(remaining(&l, 7, t0 + secs(61.0)), 600);
}

#[test]
fn promotion_continues_from_the_checkpointed_remaining_ttl() {
    let t0 = Instant::now();
    let l = lessor_with(Some(Duration::from_secs(60)));
    grant(&l, 7, 600, t0);
    l.apply(
        &[LeaseChange::Checkpointed {
            id: 7,
            remaining_ttl: 100,
        }],
        t0,
    );
    l.promote(SEC, t0, || true);
    assert_eq!(remaining(&l, 7, t0), 101);
}

#[test]
fn without_checkpointing_nothing_is_due() {
    let t0 = Instant::now();
    let l = primary(t0);
    grant(&l, 7, 6000, t0);
    assert!(l.due_checkpoints(t0 + secs(1000.0), 10).is_empty());
}
