//! Generated protobuf types: etcd's v3 API (exact wire layout) and etcdcore's
//! internal messages.

#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
/// etcd's backend record of a lease (the "lease" bucket's values).
pub mod leasepb {
    tonic::include_proto!("leasepb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
pub mod internal {
    tonic::include_proto!("etcdcore");
    // Nested as its package is: the generated code names `super::MemberRecord`.
    pub mod peer {
        tonic::include_proto!("etcdcore.peer");
    }
}
pub use internal::peer;
