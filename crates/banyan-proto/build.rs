//! Generates Rust types and tonic services from `proto/banyan/v1` with a vendored `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY-free: build scripts run single-threaded; prost-build reads PROTOC.
    std::env::set_var("PROTOC", protoc);

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "customer",
        "contact",
        "queue",
        "agent",
        "event",
        "contact_center",
        "cluster",
        "raft",
    ]
    .map(|name| root.join(format!("banyan/v1/{name}.proto")));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptor = PathBuf::from(std::env::var("OUT_DIR")?).join("banyan_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor)
        .compile_protos(&files, &[root])?;
    Ok(())
}
