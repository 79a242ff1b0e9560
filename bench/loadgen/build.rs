//! Compiles the etcd v3 client stubs from the repository's proto/ directory.
//! protoc comes from protoc-bin-vendored, so no system package is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    let protos = [
        "../../proto/mvccpb/kv.proto",
        "../../proto/authpb/auth.proto",
        "../../proto/etcdserverpb/rpc.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_protos(&protos, &["../../proto"])?;
    Ok(())
}
