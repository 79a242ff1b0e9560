//! The client-facing errors, with etcd's exact gRPC codes and message texts.
//!
//! Clients match on these texts (Go clientv3 maps them back to typed errors), so
//! they are spelled here once and nowhere else.

use tonic::{Code, Status};

pub const EMPTY_KEY: &str = "etcdserver: key is not provided";
pub const KEY_NOT_FOUND: &str = "etcdserver: key not found";
pub const VALUE_PROVIDED: &str = "etcdserver: value is provided";
pub const LEASE_PROVIDED: &str = "etcdserver: lease is provided";
pub const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
pub const DUPLICATE_KEY: &str = "etcdserver: duplicate key given in txn request";
pub const INVALID_SORT: &str = "etcdserver: invalid sort option";
pub const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
pub const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";
pub const CORRUPT: &str = "etcdserver: corrupt cluster";
pub const LEASE_EXISTS: &str = "etcdserver: lease already exists";
pub const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
pub const LEASE_TTL_TOO_LARGE: &str = "etcdserver: too large lease TTL";
pub const NO_LEADER: &str = "etcdserver: no leader";
pub const STOPPED: &str = "etcdserver: server stopped";
pub const TIMEOUT: &str = "etcdserver: request timed out";
pub const TOO_MANY_REQUESTS: &str = "etcdserver: too many requests";
pub const NOT_LEADER: &str = "etcdserver: not leader";
pub const NOT_FOR_LEARNER: &str = "etcdserver: rpc not supported for learner";
pub const BAD_LEADER_TRANSFEREE: &str = "etcdserver: bad leader transferee";
pub const MEMBER_EXISTS: &str = "etcdserver: member ID already exist";
pub const PEER_URL_EXISTS: &str = "etcdserver: Peer URLs already exists";
pub const MEMBER_NOT_FOUND: &str = "etcdserver: member not found";
pub const MEMBER_NOT_LEARNER: &str = "etcdserver: can only promote a learner member";
pub const LEARNER_NOT_READY: &str =
    "etcdserver: can only promote a learner member which is in sync with leader";
pub const TOO_MANY_LEARNERS: &str = "etcdserver: too many learner members in cluster";
pub const NOT_ENOUGH_STARTED: &str =
    "etcdserver: re-configuration failed due to not enough started members";

pub fn invalid(msg: &str) -> Status {
    Status::new(Code::InvalidArgument, msg)
}

pub fn no_leader() -> Status {
    Status::new(Code::Unavailable, NO_LEADER)
}

pub fn stopped() -> Status {
    Status::new(Code::Unavailable, STOPPED)
}

/// The applier is far behind what committed (etcd's ErrTooManyRequests).
pub fn too_many_requests() -> Status {
    Status::new(Code::ResourceExhausted, TOO_MANY_REQUESTS)
}

pub fn timed_out() -> Status {
    Status::new(Code::Unavailable, TIMEOUT)
}

pub fn not_for_learner() -> Status {
    Status::new(Code::Unavailable, NOT_FOR_LEARNER)
}

pub fn not_leader() -> Status {
    Status::new(Code::FailedPrecondition, NOT_LEADER)
}

pub fn failed_precondition(msg: &str) -> Status {
    Status::new(Code::FailedPrecondition, msg)
}

pub fn member_not_found() -> Status {
    Status::new(Code::NotFound, MEMBER_NOT_FOUND)
}

pub fn no_space() -> Status {
    Status::new(Code::ResourceExhausted, NO_SPACE)
}

pub fn corrupt() -> Status {
    Status::new(Code::DataLoss, CORRUPT)
}

pub fn lease_exists() -> Status {
    Status::new(Code::FailedPrecondition, LEASE_EXISTS)
}

pub fn lease_not_found() -> Status {
    Status::new(Code::NotFound, LEASE_NOT_FOUND)
}

pub fn lease_ttl_too_large() -> Status {
    Status::new(Code::OutOfRange, LEASE_TTL_TOO_LARGE)
}

impl From<crate::mvcc::MvccError> for Status {
    fn from(e: crate::mvcc::MvccError) -> Status {
        Status::new(Code::from_i32(e.grpc_code()), e.to_string())
    }
}

// -- authentication and RBAC ------------------------------------------------------

pub const ROOT_USER_NOT_EXIST: &str = "etcdserver: root user does not exist";
pub const ROOT_ROLE_NOT_EXIST: &str = "etcdserver: root user does not have root role";
pub const USER_ALREADY_EXIST: &str = "etcdserver: user name already exists";
pub const USER_EMPTY: &str = "etcdserver: user name is empty";
pub const USER_NOT_FOUND: &str = "etcdserver: user name not found";
pub const ROLE_ALREADY_EXIST: &str = "etcdserver: role name already exists";
pub const ROLE_NOT_FOUND: &str = "etcdserver: role name not found";
pub const ROLE_EMPTY: &str = "etcdserver: role name is empty";
pub const AUTH_FAILED: &str = "etcdserver: authentication failed, invalid user ID or password";
pub const PERMISSION_NOT_GIVEN: &str = "etcdserver: permission not given";
pub const PERMISSION_DENIED: &str = "etcdserver: permission denied";
pub const ROLE_NOT_GRANTED: &str = "etcdserver: role is not granted to the user";
pub const PERMISSION_NOT_GRANTED: &str = "etcdserver: permission is not granted to the role";
pub const AUTH_NOT_ENABLED: &str = "etcdserver: authentication is not enabled";
pub const INVALID_AUTH_TOKEN: &str = "etcdserver: invalid auth token";
pub const INVALID_AUTH_MGMT: &str = "etcdserver: invalid auth management";
pub const AUTH_OLD_REVISION: &str = "etcdserver: revision of auth store is old";

/// An auth error with the gRPC code etcd gives its message.
pub fn auth(msg: &'static str) -> Status {
    let code = match msg {
        USER_EMPTY | ROLE_EMPTY | AUTH_FAILED | PERMISSION_NOT_GIVEN | INVALID_AUTH_MGMT
        | AUTH_OLD_REVISION => Code::InvalidArgument,
        PERMISSION_DENIED => Code::PermissionDenied,
        INVALID_AUTH_TOKEN => Code::Unauthenticated,
        _ => Code::FailedPrecondition,
    };
    Status::new(code, msg)
}
