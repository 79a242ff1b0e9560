//! The buckets beside the key bucket: how the applier writes the replicated
//! state into them, and how start-up reads it back.

use redb::Table;

use super::key_table::WriteKeyTable;
use super::schema::{self, Bucket};
use super::{entry_bytes, BackendError, ReadTx, WriteTx};
use crate::mvcc::Revision;
use crate::pb::authpb::{Role, User};
use crate::pb::etcdserverpb::AlarmMember;
use crate::pb::internal::{AuthState, MemberRecord};

/// The tables of one write batch. The key bucket stays open for the whole
/// batch (nearly every entry writes it); the others are opened when written.
pub struct Tables<'t> {
    tx: &'t WriteTx,
    pub key: WriteKeyTable<'t>,
}

impl<'t> Tables<'t> {
    pub(super) fn open(tx: &'t WriteTx) -> Result<Tables<'t>, BackendError> {
        Ok(Tables {
            tx,
            key: WriteKeyTable::new(tx)?,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> BackendError {
        self.tx.record_failure(self.tx.backend.error(e))
    }

    fn table(
        &self,
        bucket: Bucket,
    ) -> Result<Table<'t, &'static [u8], &'static [u8]>, BackendError> {
        self.tx.txn.open_table(bucket).map_err(|e| self.err(e))
    }

    fn put(&self, bucket: Bucket, key: &[u8], value: &[u8]) -> Result<(), BackendError> {
        let mut t = self.table(bucket)?;
        let old = t
            .insert(key, value)
            .map_err(|e| self.err(e))?
            .map(|old| entry_bytes(key, old.value()));
        self.tx
            .add_live(entry_bytes(key, value) - old.unwrap_or_default());
        Ok(())
    }

    fn remove(&self, bucket: Bucket, key: &[u8]) -> Result<(), BackendError> {
        let mut t = self.table(bucket)?;
        let old = t
            .remove(key)
            .map_err(|e| self.err(e))?
            .map(|old| entry_bytes(key, old.value()));
        self.tx.add_live(-old.unwrap_or_default());
        Ok(())
    }

    /// Replaces a small bucket's whole content (membership, auth, alarms:
    /// changed rarely, a few entries each).
    fn replace(&self, bucket: Bucket, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), BackendError> {
        let mut t = self.table(bucket)?;
        let mut freed = 0;
        t.retain(|k, v| {
            freed += entry_bytes(k, v);
            false
        })
        .map_err(|e| self.err(e))?;
        self.tx.add_live(-freed);
        drop(t);
        for (k, v) in entries {
            self.put(bucket, k, v)?;
        }
        Ok(())
    }

    /// The Raft position this batch brings the state to.
    pub fn set_consistent_index(&self, index: u64, term: u64) -> Result<(), BackendError> {
        self.put(
            schema::META,
            schema::CONSISTENT_INDEX,
            &schema::u64_value(index),
        )?;
        self.put(schema::META, schema::TERM, &schema::u64_value(term))
    }

    /// A compaction at `rev` was applied: on restart it is redone if it had
    /// not finished removing versions.
    pub fn set_scheduled_compaction(&self, rev: i64) -> Result<(), BackendError> {
        self.put(
            schema::META,
            schema::SCHEDULED_COMPACT,
            &Revision::new(rev, 0).to_bytes(false),
        )
    }

    pub fn set_finished_compaction(&self, rev: i64) -> Result<(), BackendError> {
        self.put(
            schema::META,
            schema::FINISHED_COMPACT,
            &Revision::new(rev, 0).to_bytes(false),
        )
    }

    /// Writes a lease: its granted TTL and its checkpointed remaining TTL
    /// (0: none).
    pub fn put_lease(&self, id: i64, ttl: i64, remaining_ttl: i64) -> Result<(), BackendError> {
        self.put(
            schema::LEASE,
            &schema::lease_key(id),
            &schema::lease_value(id, ttl, remaining_ttl),
        )
    }

    pub fn remove_lease(&self, id: i64) -> Result<(), BackendError> {
        self.remove(schema::LEASE, &schema::lease_key(id))
    }

    pub fn save_alarms(&self, alarms: &[AlarmMember]) -> Result<(), BackendError> {
        let entries: Vec<_> = alarms
            .iter()
            .map(|a| (schema::alarm_key(a), Vec::new()))
            .collect();
        self.replace(schema::ALARM, &entries)
    }

    /// The membership: every member (etcd's JSON), the removed ids, the
    /// Raft configuration they stand for (`meta`'s confState) and the
    /// cluster version.
    pub fn save_membership<'m>(
        &self,
        members: impl Iterator<Item = &'m MemberRecord>,
        removed: impl Iterator<Item = u64>,
    ) -> Result<(), BackendError> {
        let members: Vec<&MemberRecord> = members.collect();
        let rows: Vec<_> = members
            .iter()
            .map(|m| (schema::member_key(m.id), schema::member_value(m)))
            .collect();
        self.replace(schema::MEMBERS, &rows)?;
        let removed: Vec<_> = removed
            .map(|id| (schema::member_key(id), schema::REMOVED.to_vec()))
            .collect();
        self.replace(schema::MEMBERS_REMOVED, &removed)?;
        let ids = |learner: bool| -> Vec<u64> {
            let mut ids: Vec<u64> = members
                .iter()
                .filter(|m| m.is_learner == learner)
                .map(|m| m.id)
                .collect();
            ids.sort_unstable();
            ids
        };
        self.put(
            schema::META,
            schema::CONF_STATE,
            &schema::conf_state_value(&ids(false), &ids(true)),
        )?;
        self.put(
            schema::CLUSTER,
            schema::CLUSTER_VERSION,
            schema::CLUSTER_VERSION_VALUE,
        )
    }

    /// The auth store after a change: its revision, users and roles, and the
    /// enabled flag when `enabled_changed` (etcd writes that key only when
    /// auth is turned on or off).
    pub fn save_auth(&self, auth: &AuthState, enabled_changed: bool) -> Result<(), BackendError> {
        self.put(
            schema::AUTH,
            schema::AUTH_REVISION,
            &schema::u64_value(auth.revision),
        )?;
        if enabled_changed {
            self.put(
                schema::AUTH,
                schema::AUTH_ENABLED,
                &[u8::from(auth.enabled)],
            )?;
        }
        let users: Vec<_> = auth
            .users
            .iter()
            .map(|u| (u.name.clone(), schema::user_value(u)))
            .collect();
        self.replace(schema::AUTH_USERS, &users)?;
        let roles: Vec<_> = auth
            .roles
            .iter()
            .map(|r| (r.name.clone(), schema::role_value(r)))
            .collect();
        self.replace(schema::AUTH_ROLES, &roles)
    }
}

/// Everything the backend holds beside the key bucket, as start-up reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SavedState {
    pub consistent_index: u64,
    pub term: u64,
    /// The last compaction applied (-1: none) and the last one that finished
    /// removing versions.
    pub scheduled_compaction: i64,
    pub finished_compaction: i64,
    /// (id, granted TTL, checkpointed remaining TTL) of every lease.
    pub leases: Vec<(i64, i64, i64)>,
    pub alarms: Vec<AlarmMember>,
    pub members: Vec<MemberRecord>,
    pub removed: Vec<u64>,
    pub auth: AuthState,
    /// Bytes the small buckets hold, for the live-bytes count.
    pub bytes: i64,
}

impl ReadTx {
    /// (consistent index, term): the Raft entry this state reflects.
    pub fn position(&self) -> Result<(u64, u64), BackendError> {
        let bad = |what: String| self.backend.error(what);
        let index = match self.get(schema::META, schema::CONSISTENT_INDEX)? {
            Some(v) => schema::parse_u64("consistent_index", &v).map_err(bad)?,
            None => 0,
        };
        let term = match self.get(schema::META, schema::TERM)? {
            Some(v) => schema::parse_u64("term", &v).map_err(bad)?,
            None => 0,
        };
        Ok((index, term))
    }

    /// The members this state holds.
    pub fn members(&self) -> Result<Vec<MemberRecord>, BackendError> {
        let mut members = Vec::new();
        self.for_each(schema::MEMBERS, &mut |_, v| {
            members.push(schema::parse_member(v).map_err(|e| self.backend.error(e))?);
            Ok(true)
        })?;
        Ok(members)
    }
}

impl SavedState {
    pub(super) fn read(rtx: &ReadTx) -> Result<SavedState, BackendError> {
        let mut s = SavedState {
            scheduled_compaction: -1,
            finished_compaction: -1,
            ..Default::default()
        };
        // etcd's auth store starts at revision 1 (before anything is saved).
        s.auth.revision = 1;
        let bad = |what: String| rtx.backend.error(what);
        rtx.for_each(schema::META, &mut |k, v| {
            s.bytes += entry_bytes(k, v);
            match k {
                schema::CONSISTENT_INDEX => {
                    s.consistent_index = schema::parse_u64("consistent_index", v).map_err(bad)?
                }
                schema::TERM => s.term = schema::parse_u64("term", v).map_err(bad)?,
                schema::SCHEDULED_COMPACT => {
                    s.scheduled_compaction = schema::parse_revision(v).map_err(bad)?.0.main
                }
                schema::FINISHED_COMPACT => {
                    s.finished_compaction = schema::parse_revision(v).map_err(bad)?.0.main
                }
                _ => {}
            }
            Ok(true)
        })?;
        rtx.for_each(schema::LEASE, &mut |k, v| {
            s.bytes += entry_bytes(k, v);
            let l = schema::parse_lease(v).map_err(bad)?;
            s.leases.push((l.id, l.ttl, l.remaining_ttl));
            Ok(true)
        })?;
        rtx.for_each(schema::ALARM, &mut |k, v| {
            s.bytes += entry_bytes(k, v);
            s.alarms.push(schema::parse_alarm(k).map_err(bad)?);
            Ok(true)
        })?;
        rtx.for_each(schema::MEMBERS, &mut |k, v| {
            s.bytes += entry_bytes(k, v);
            s.members.push(schema::parse_member(v).map_err(bad)?);
            Ok(true)
        })?;
        rtx.for_each(schema::MEMBERS_REMOVED, &mut |k, v| {
            s.bytes += entry_bytes(k, v);
            s.removed.push(schema::parse_member_key(k).map_err(bad)?);
            Ok(true)
        })?;
        rtx.for_each(schema::CLUSTER, &mut |k, v| {
            s.bytes += entry_bytes(k, v);
            Ok(true)
        })?;
        rtx.for_each(schema::AUTH, &mut |k, v| {
            s.bytes += entry_bytes(k, v);
            match k {
                schema::AUTH_ENABLED => s.auth.enabled = v.first() == Some(&1),
                schema::AUTH_REVISION => {
                    s.auth.revision = schema::parse_u64("authRevision", v).map_err(bad)?
                }
                _ => {}
            }
            Ok(true)
        })?;
        let mut users: Vec<User> = Vec::new();
        rtx.for_each(schema::AUTH_USERS, &mut |k, v| {
            s.bytes += entry_bytes(k, v);
            users.push(schema::parse_user(v).map_err(bad)?);
            Ok(true)
        })?;
        let mut roles: Vec<Role> = Vec::new();
        rtx.for_each(schema::AUTH_ROLES, &mut |k, v| {
            s.bytes += entry_bytes(k, v);
            roles.push(schema::parse_role(v).map_err(bad)?);
            Ok(true)
        })?;
        s.auth.users = users;
        s.auth.roles = roles;
        Ok(s)
    }
}
