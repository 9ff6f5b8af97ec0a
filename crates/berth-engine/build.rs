//! Builds berth-init statically with plain rustc, so the engine can carry
//! it and mount it into `--init` containers whatever libc they have.

use std::path::PathBuf;
use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let src = manifest.join("../berth-init/src/main.rs");
    println!("cargo:rerun-if-changed={}", src.display());
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("berth-init");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args(["--edition", "2021", "--crate-name", "berth_init", "-C", "opt-level=s", "-C", "panic=abort"])
        .args(["-C", "target-feature=+crt-static", "-C", "strip=symbols", "-o"])
        .arg(&out)
        .arg(&src)
        .status()?;
    if !status.success() {
        return Err(format!("building the static berth-init failed: {status}").into());
    }
    Ok(())
}
