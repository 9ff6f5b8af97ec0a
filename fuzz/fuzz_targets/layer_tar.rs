//! A layer tar (any compression) unpacked into a directory: it must never
//! write outside it, nor panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let base = std::env::temp_dir().join(format!("berth-fuzz-layer-{}", std::process::id()));
    let dir = base.join("layer");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let _ = berth_image::unpack::apply(&dir, data);
    // Nothing beside the layer directory.
    let beside: Vec<_> = std::fs::read_dir(&base).expect("list").flatten().map(|e| e.file_name()).collect();
    assert_eq!(beside, [std::ffi::OsString::from("layer")], "an entry escaped the layer");
    let _ = std::fs::remove_dir_all(&base);
});
