//! The errors the MVCC store reports, worded as etcd 3.5 words them to clients.

/// An MVCC failure. `Display` gives etcd's exact client-facing message and
/// [`MvccError::grpc_code`] the gRPC status code etcd answers with.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MvccError {
    /// The requested revision is older than the last compaction.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision has not happened yet.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    /// A put named a lease that does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// `ignore_value` / `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// What the backend holds could not be decoded or is inconsistent.
    #[error("etcdserver: mvcc: corrupt state: {0}")]
    Corrupt(String),
    /// The backend failed to read or write: the member must stop.
    #[error("etcdserver: backend: {0}")]
    Backend(String),
}

impl MvccError {
    /// The gRPC status code etcd uses for this error.
    pub fn grpc_code(&self) -> i32 {
        const NOT_FOUND: i32 = 5;
        const INVALID_ARGUMENT: i32 = 3;
        const OUT_OF_RANGE: i32 = 11;
        const INTERNAL: i32 = 13;
        match self {
            MvccError::Compacted | MvccError::FutureRev => OUT_OF_RANGE,
            MvccError::LeaseNotFound => NOT_FOUND,
            MvccError::KeyNotFound => INVALID_ARGUMENT,
            MvccError::Corrupt(_) | MvccError::Backend(_) => INTERNAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_etcd() {
        assert_eq!(
            MvccError::Compacted.to_string(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        assert_eq!(
            MvccError::FutureRev.to_string(),
            "etcdserver: mvcc: required revision is a future revision"
        );
        assert_eq!(
            MvccError::LeaseNotFound.to_string(),
            "etcdserver: requested lease not found"
        );
        assert_eq!(
            MvccError::KeyNotFound.to_string(),
            "etcdserver: key not found"
        );
    }

    #[test]
    fn grpc_codes_match_etcd() {
        assert_eq!(MvccError::Compacted.grpc_code(), 11);
        assert_eq!(MvccError::FutureRev.grpc_code(), 11);
        assert_eq!(MvccError::LeaseNotFound.grpc_code(), 5);
        assert_eq!(MvccError::KeyNotFound.grpc_code(), 3);
        assert_eq!(MvccError::Corrupt("x".into()).grpc_code(), 13);
    }
}
