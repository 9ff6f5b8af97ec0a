//! berth-shim is linked at a fixed address (no PIE): its pointer tables
//! are then filled by the linker rather than relocated at start, so they
//! stay clean file pages that an idle shim can drop (see src/trim.rs),
//! instead of a private copy in every shim.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
