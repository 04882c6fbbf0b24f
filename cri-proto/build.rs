//! Compiles proto/api.proto (the CRI runtime.v1 API) into prost types and tonic services.
//! Needs `protoc` on PATH (Debian: protobuf-compiler, installed by scripts/setup.sh).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Credentials must never reach a log line through `{:?}`; lib.rs gives this type
        // a redacting Debug.
        .skip_debug(["runtime.v1.AuthConfig"])
        .compile_protos(&["proto/api.proto"], &["proto"])?;
    Ok(())
}
