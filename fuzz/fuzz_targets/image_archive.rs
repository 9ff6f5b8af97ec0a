//! A `docker load` archive (docker-archive or OCI layout, plain or
//! compressed) loaded into a store of its own.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let base = std::env::temp_dir().join(format!("berth-fuzz-archive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("a scratch directory");
    let store = berth_image::images::ImageStore::open(&base.join("store")).expect("a store");
    let file = base.join("in.tar");
    std::fs::write(&file, data).expect("write the input");
    let _ = berth_image::archive::load(&store, &file);
    let _ = std::fs::remove_dir_all(&base);
});
