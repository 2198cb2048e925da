//! Generates the messages and the server trait from `proto/inference.proto`
//! with protoc (`scripts/install-build-deps` installs it).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/inference.proto");
    tonic_prost_build::configure()
        .build_client(false)
        .compile_protos(&["proto/inference.proto"], &["proto"])?;
    Ok(())
}
