//! etcdcore's Rust core, imported from Python as `etcdcore._core`.
//!
//! It owns the hot path: the gRPC wire (tonic), the KV data path, the MVCC
//! store, the WAL with group-commit fsync, snapshots and Raft (raft-rs). Python
//! runs the process and the other services, reached through [`bridge`].

// tonic::Status (176 bytes) is the error of every gRPC path here; boxing it
// at each return would cost an allocation per error and buy nothing.
#![allow(clippy::result_large_err)]

pub mod alarms;
pub mod auth;
pub mod backend;
pub mod bbolt;
pub mod bridge;
pub mod errors;
pub mod gateway;
pub mod grpcproxy;
pub mod identity;
pub mod idutil;
pub mod lease_table;
pub mod lessor;
pub mod member;
pub mod membership;
pub mod metrics;
pub mod mvcc;
pub mod pb;
mod python;
mod python_gateway;
mod python_grpcproxy;
mod python_jwt;
pub mod quota;
pub mod raft_node;
pub mod server;
pub mod snapshot_file;
pub mod state_machine;
pub mod tls;
pub mod tls_verify;
pub mod transport;
pub mod wal;
pub mod watch;
