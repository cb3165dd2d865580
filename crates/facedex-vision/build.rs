//! Compiles ONNX's model schema (`proto/onnx/onnx.proto`) with protox (pure Rust: no protoc
//! to install) into prost messages, which the graph rewriting reads and writes.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let schema = proto_root.join("onnx/onnx.proto");
    println!("cargo:rerun-if-changed={}", schema.display());
    let descriptors = protox::compile([&schema], [&proto_root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
