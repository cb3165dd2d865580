//! Compiles the `.proto` files under `proto/facedex/` with protox (pure Rust: no protoc to install) into
//! prost messages and tonic stubs, and keeps the descriptor set for gRPC reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not baked in when it is compiled: a compiled build script is
    // reused by every checkout that shares a target directory.
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "facedex/v1/face_search.proto",
        "facedex/v1/people.proto",
        "facedex/pipeline/v1/pipeline.proto",
        "facedex/embed/v1/embedder.proto",
    ]
    .map(|file| proto_root.join(file));
    println!("cargo:rerun-if-changed={}", proto_root.display());
    let descriptors = protox::compile(&files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("facedex_v1_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
