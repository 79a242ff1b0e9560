//! What each RPC needs when auth is on, checked where the request enters
//! (etcd checks writes again when applying; here the check at entry is the
//! only one, so a permission revoked while a write is in flight does not
//! stop that write).
//!
//! KV: reads need read permission on their range, writes write permission
//! (and read as well when they return previous values), a txn everything its
//! compares and operations touch; compaction needs the root role. Lease
//! revocation needs write permission on the lease's keys. The services
//! bridged to Python are checked here before they are forwarded: admin RPCs
//! need the root role, watches read permission on their range (a refused
//! watch is cancelled, as etcd does), locks and elections permission on
//! keys under their name.

use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::{Access, AuthStore, Caller, Presented};
use crate::errors::{self, auth as err};
use crate::pb::etcdserverpb::request_op::Request as Op;
use crate::pb::etcdserverpb::{
    AlarmRequest, AuthRoleGetRequest, AuthUserGetRequest, DeleteRangeRequest, PutRequest,
    RangeRequest, TxnRequest, WatchCreateRequest,
};
use crate::raft_node::Shared;

/// The token a request carries: gRPC's "token" metadata, or the gateway's
/// "authorization" header.
pub fn token(md: &MetadataMap) -> Option<String> {
    md.get("token")
        .or_else(|| md.get("authorization"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Who a request runs as: this process's own clients pass; otherwise the
/// token decides, or without one (as etcd) the common name of the client
/// certificate the TLS handshake verified.
pub fn caller<T>(shared: &Shared, req: &tonic::Request<T>) -> Result<Caller, Status> {
    let token = token(req.metadata());
    if token.as_deref() == Some(shared.internal_token.as_str()) {
        return Ok(Caller::Anyone);
    }
    let presented = Presented::read(token.as_deref(), shared.jwt.get().map(|j| &**j));
    let sm = shared.sm.read().expect("state poisoned");
    let caller = sm.auth.caller(presented)?;
    if caller == Caller::Nobody {
        if let Some(cn) = req
            .peer_certs()
            .and_then(|certs| common_name(certs.first()?))
        {
            return Ok(sm.auth.current_user(cn));
        }
    }
    Ok(caller)
}

/// The subject common name of a DER certificate.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

pub fn check_range(s: &AuthStore, c: &Caller, r: &RangeRequest) -> Result<(), Status> {
    s.check(c, Access::Read, &r.key, &r.range_end)
}

pub fn check_put(s: &AuthStore, c: &Caller, r: &PutRequest) -> Result<(), Status> {
    s.check(c, Access::Write, &r.key, &[])?;
    if r.prev_kv {
        s.check(c, Access::Read, &r.key, &[])?;
    }
    Ok(())
}

pub fn check_delete(s: &AuthStore, c: &Caller, r: &DeleteRangeRequest) -> Result<(), Status> {
    s.check(c, Access::Write, &r.key, &r.range_end)?;
    if r.prev_kv {
        s.check(c, Access::Read, &r.key, &r.range_end)?;
    }
    Ok(())
}

pub fn check_txn(s: &AuthStore, c: &Caller, r: &TxnRequest) -> Result<(), Status> {
    for cmp in &r.compare {
        s.check(c, Access::Read, &cmp.key, &cmp.range_end)?;
    }
    for op in r.success.iter().chain(&r.failure) {
        match &op.request {
            Some(Op::RequestRange(r)) => check_range(s, c, r)?,
            Some(Op::RequestPut(p)) => check_put(s, c, p)?,
            Some(Op::RequestDeleteRange(d)) => check_delete(s, c, d)?,
            Some(Op::RequestTxn(t)) => check_txn(s, c, t)?,
            None => {}
        }
    }
    Ok(())
}

// The v3lock / v3election requests, only as far as the checks read them.
#[derive(Clone, PartialEq, Message)]
struct NameField {
    #[prost(bytes = "vec", tag = "1")]
    name: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct LeaderKeyField {
    #[prost(message, optional, tag = "1")]
    leader: Option<NameField>,
}

fn decode<M: Message + Default>(body: &[u8]) -> Result<M, Status> {
    M::decode(body).map_err(|e| Status::internal(format!("grpc: error unmarshalling request: {e}")))
}

/// The keys a lock or election called `name` uses: `name/` and below.
fn under(name: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    let mut end = prefix.clone();
    // "name/" + 1 in the last byte: '/' + 1 = '0'.
    *end.last_mut().expect("not empty") += 1;
    (prefix, end)
}

/// LeaseRevoke: the root role, or write permission on every key attached to
/// the lease (`keys`), as etcd checks a revocation when applying it.
pub fn check_lease_revoke(s: &AuthStore, c: &Caller, keys: &[Vec<u8>]) -> Result<(), Status> {
    if matches!(c, Caller::Anyone) || s.is_admin(c).is_ok() {
        return Ok(());
    }
    for key in keys {
        s.check(c, Access::Write, key, &[])?;
    }
    Ok(())
}

/// Checks a unary call to a bridged service (`method` is the gRPC path).
pub fn check_bridged(s: &AuthStore, c: &Caller, method: &str, body: &[u8]) -> Result<(), Status> {
    if matches!(c, Caller::Anyone) {
        return Ok(());
    }
    let (service, rpc) = method
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", ""));
    match (service, rpc) {
        ("etcdserverpb.Auth", "Authenticate") => Ok(()),
        ("etcdserverpb.Auth", "UserGet") => {
            let r: AuthUserGetRequest = decode(body)?;
            match c {
                Caller::User { name, .. } if *name == r.name => Ok(()),
                _ => s.is_admin(c),
            }
        }
        ("etcdserverpb.Auth", "RoleGet") => {
            let r: AuthRoleGetRequest = decode(body)?;
            match c {
                Caller::User { name, .. } if s.has_role(name, &r.role) => Ok(()),
                _ => s.is_admin(c),
            }
        }
        ("etcdserverpb.Auth", _) => s.is_admin(c),
        ("etcdserverpb.Cluster", "MemberList") => Ok(()),
        ("etcdserverpb.Cluster", _) => s.is_admin(c),
        ("etcdserverpb.Maintenance", "Status") => Ok(()),
        ("etcdserverpb.Maintenance", "Alarm") => {
            let r: AlarmRequest = decode(body)?;
            if r.action == 0 {
                Ok(())
            } else {
                s.is_admin(c)
            }
        }
        // etcd's maintenance server hands back the auth package's own error,
        // untranslated: code Unknown, "auth: ..." text.
        ("etcdserverpb.Maintenance", _) => s.is_admin(c).map_err(|e| {
            let text = e.message().trim_start_matches("etcdserver: ");
            Status::unknown(format!("auth: {text}"))
        }),
        ("v3lockpb.Lock", "Lock") | ("v3electionpb.Election", "Campaign") => {
            let r: NameField = decode(body)?;
            let (k, end) = under(&r.name);
            s.check(c, Access::Write, &k, &end)?;
            s.check(c, Access::Read, &k, &end)
        }
        ("v3lockpb.Lock", "Unlock") => {
            let r: NameField = decode(body)?; // UnlockRequest.key is field 1
            s.check(c, Access::Write, &r.name, &[])
        }
        ("v3electionpb.Election", "Proclaim") | ("v3electionpb.Election", "Resign") => {
            let r: LeaderKeyField = decode(body)?;
            let name = r.leader.map(|l| l.name).unwrap_or_default();
            let (k, end) = under(&name);
            s.check(c, Access::Write, &k, &end)
        }
        ("v3electionpb.Election", _) => {
            let r: NameField = decode(body)?;
            let (k, end) = under(&r.name);
            s.check(c, Access::Read, &k, &end)
        }
        _ => Ok(()),
    }
}

/// Checks a watch create request: read permission on its range. A refused
/// create is answered with the cancellation etcd sends, not an error.
pub fn check_watch_create(
    s: &AuthStore,
    c: &Caller,
    create: &WatchCreateRequest,
) -> Result<(), Status> {
    if matches!(c, Caller::Anyone) {
        return Ok(());
    }
    // etcd's cancel reasons: an old token revision keeps its own.
    s.check(c, Access::Read, &create.key, &create.range_end)
        .map_err(|e| match e.message() {
            errors::AUTH_OLD_REVISION => e,
            _ => err(errors::PERMISSION_DENIED),
        })
}
