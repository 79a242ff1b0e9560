//! Compiles etcd's v3 API and etcdcore's internal messages with prost/tonic.
//! protoc comes from the protoc-bin-vendored crate so a fresh machine needs no
//! system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    let protos = [
        "proto/mvccpb/kv.proto",
        "proto/authpb/auth.proto",
        "proto/etcdserverpb/rpc.proto",
        "proto/etcdcore/internal.proto",
        "proto/etcdcore/peer.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_build::configure()
        // Clients for the peer protocol: members call each other.
        .build_client(true)
        .build_server(true)
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
