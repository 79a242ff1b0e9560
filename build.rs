//! Compiles etcd's v3 API and etcdcore's internal messages with prost/tonic.
//! protoc comes from the protoc-bin-vendored crate so a fresh machine needs no
//! system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    // etcd's API: its services answer undecodable requests in grpc-go's words.
    let api = [
        "proto/mvccpb/kv.proto",
        "proto/authpb/auth.proto",
        "proto/leasepb/lease.proto",
        "proto/etcdserverpb/rpc.proto",
        // The gRPC proxy serves and calls these too.
        "proto/v3lock/v3lock.proto",
        "proto/v3election/v3election.proto",
    ];
    let internal = ["proto/etcdcore/internal.proto", "proto/etcdcore/peer.proto"];
    println!("cargo:rerun-if-changed=build.rs");
    for p in api.iter().chain(&internal) {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_build::configure()
        // Clients for the peer protocol: members call each other.
        .build_client(true)
        .build_server(true)
        .compile_protos(&internal, &["proto"])?;
    // Last: compiling internal.proto writes its imports' modules too.
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::server::grpc_codec::EtcdCodec")
        .compile_protos(&api, &["proto"])?;
    Ok(())
}
