//! Generates the etcd client stub used by `banyan bench --etcd`, with a vendored `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    println!("cargo:rerun-if-changed=proto/etcd_put.proto");
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/etcd_put.proto"], &["proto"])?;
    Ok(())
}
