//! The replicated membership: who is in the cluster, with which URLs, as
//! voter or learner, and which ids were removed for good.
//!
//! Membership changes are Raft configuration changes: each member applies them
//! at the same log position, so every member (and every snapshot) agrees on the
//! cluster. Requests are checked twice, as etcd does: when proposed (to answer
//! the caller early) and when applied (the answer that counts, since another
//! change may have committed in between).

use std::collections::{BTreeMap, BTreeSet};

use raft::prelude::ConfState;
use tonic::Status;

use crate::errors;
use crate::pb::internal::MemberRecord;

/// etcd allows one learner at a time (--experimental-max-learners defaults to 1).
const MAX_LEARNERS: usize = 1;

#[derive(Clone, Debug, Default)]
pub struct Membership {
    pub cluster_id: u64,
    members: BTreeMap<u64, MemberRecord>,
    removed: BTreeSet<u64>,
}

/// A membership change, as a ConfChange entry carries it.
#[derive(Clone, Debug)]
pub enum Change {
    Add(MemberRecord),
    Remove(u64),
    Promote(u64),
}

impl Membership {
    pub fn new(cluster_id: u64, members: Vec<MemberRecord>) -> Membership {
        Membership {
            cluster_id,
            members: members.into_iter().map(|m| (m.id, m)).collect(),
            removed: BTreeSet::new(),
        }
    }

    pub fn from_parts(cluster_id: u64, members: Vec<MemberRecord>, removed: Vec<u64>) -> Self {
        let mut m = Membership::new(cluster_id, members);
        m.removed = removed.into_iter().collect();
        m
    }

    /// Every member, sorted by id.
    pub fn members(&self) -> impl Iterator<Item = &MemberRecord> {
        self.members.values()
    }

    pub fn removed(&self) -> impl Iterator<Item = u64> + '_ {
        self.removed.iter().copied()
    }

    pub fn get(&self, id: u64) -> Option<&MemberRecord> {
        self.members.get(&id)
    }

    pub fn is_removed(&self, id: u64) -> bool {
        self.removed.contains(&id)
    }

    pub fn voters(&self) -> Vec<u64> {
        self.members
            .values()
            .filter(|m| !m.is_learner)
            .map(|m| m.id)
            .collect()
    }

    /// The Raft configuration this membership stands for.
    pub fn conf_state(&self) -> ConfState {
        let learners = self
            .members
            .values()
            .filter(|m| m.is_learner)
            .map(|m| m.id)
            .collect::<Vec<_>>();
        ConfState::from((self.voters(), learners))
    }

    /// etcd's membership checks for a change, with etcd's errors.
    pub fn check(&self, change: &Change) -> Result<(), Status> {
        match change {
            Change::Add(m) => {
                if self.removed.contains(&m.id) {
                    return Err(errors::member_not_found());
                }
                if self.members.contains_key(&m.id) {
                    return Err(errors::failed_precondition(errors::MEMBER_EXISTS));
                }
                let used: BTreeSet<&str> = self
                    .members
                    .values()
                    .flat_map(|x| x.peer_urls.iter().map(String::as_str))
                    .collect();
                if m.peer_urls.iter().any(|u| used.contains(u.as_str())) {
                    return Err(errors::failed_precondition(errors::PEER_URL_EXISTS));
                }
                let learners = self.members.values().filter(|x| x.is_learner).count();
                if m.is_learner && learners >= MAX_LEARNERS {
                    return Err(errors::failed_precondition(errors::TOO_MANY_LEARNERS));
                }
                Ok(())
            }
            Change::Remove(id) => {
                if self.members.contains_key(id) {
                    Ok(())
                } else {
                    Err(errors::member_not_found())
                }
            }
            Change::Promote(id) => match self.members.get(id) {
                None => Err(errors::member_not_found()),
                Some(m) if !m.is_learner => {
                    Err(errors::failed_precondition(errors::MEMBER_NOT_LEARNER))
                }
                Some(_) => Ok(()),
            },
        }
    }

    /// Applies a change that [`check`](Self::check) accepted.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Add(m) => {
                self.members.insert(m.id, m.clone());
            }
            Change::Remove(id) => {
                self.members.remove(id);
                self.removed.insert(*id);
            }
            Change::Promote(id) => {
                if let Some(m) = self.members.get_mut(id) {
                    m.is_learner = false;
                }
            }
        }
    }

    /// A member publishing its name and client URLs once it runs.
    pub fn set_attributes(&mut self, id: u64, name: &str, client_urls: &[String]) {
        if let Some(m) = self.members.get_mut(&id) {
            m.name = name.to_string();
            m.client_urls = client_urls.to_vec();
        }
    }

    pub fn check_update(&self, id: u64, peer_urls: &[String]) -> Result<(), Status> {
        if !self.members.contains_key(&id) {
            return Err(errors::member_not_found());
        }
        let used: BTreeSet<&str> = self
            .members
            .values()
            .filter(|m| m.id != id)
            .flat_map(|m| m.peer_urls.iter().map(String::as_str))
            .collect();
        if peer_urls.iter().any(|u| used.contains(u.as_str())) {
            return Err(errors::failed_precondition(errors::PEER_URL_EXISTS));
        }
        Ok(())
    }

    pub fn update_peer_urls(&mut self, id: u64, peer_urls: &[String]) {
        if let Some(m) = self.members.get_mut(&id) {
            m.peer_urls = peer_urls.to_vec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64, url: &str, learner: bool) -> MemberRecord {
        MemberRecord {
            id,
            name: format!("m{id}"),
            peer_urls: vec![url.to_string()],
            client_urls: vec![],
            is_learner: learner,
        }
    }

    fn three() -> Membership {
        Membership::new(
            7,
            vec![rec(1, "http://a:1", false), rec(2, "http://b:1", false)],
        )
    }

    #[test]
    fn conf_state_splits_voters_and_learners() {
        let mut m = three();
        m.apply(&Change::Add(rec(3, "http://c:1", true)));
        let cs = m.conf_state();
        assert_eq!(cs.voters, vec![1, 2]);
        assert_eq!(cs.learners, vec![3]);
    }

    #[test]
    fn adding_a_used_peer_url_is_refused() {
        let err = three().check(&Change::Add(rec(3, "http://a:1", false)));
        assert_eq!(err.unwrap_err().message(), errors::PEER_URL_EXISTS);
    }

    #[test]
    fn a_removed_id_never_comes_back() {
        let mut m = three();
        m.apply(&Change::Remove(2));
        assert!(m.is_removed(2));
        let err = m
            .check(&Change::Add(rec(2, "http://z:1", false)))
            .unwrap_err();
        assert_eq!(err.message(), errors::MEMBER_NOT_FOUND);
    }

    #[test]
    fn only_learners_are_promoted() {
        let m = three();
        let err = m.check(&Change::Promote(1)).unwrap_err();
        assert_eq!(err.message(), errors::MEMBER_NOT_LEARNER);
        assert_eq!(
            m.check(&Change::Promote(9)).unwrap_err().message(),
            errors::MEMBER_NOT_FOUND
        );
    }

    #[test]
    fn one_learner_at_a_time() {
        let mut m = three();
        m.apply(&Change::Add(rec(3, "http://c:1", true)));
        let err = m
            .check(&Change::Add(rec(4, "http://d:1", true)))
            .unwrap_err();
        assert_eq!(err.message(), errors::TOO_MANY_LEARNERS);
    }

    #[test]
    fn update_refuses_another_members_url() {
        let m = three();
        assert!(m.check_update(1, &["http://b:1".into()]).is_err());
        assert!(m.check_update(1, &["http://a:2".into()]).is_ok());
    }
}
