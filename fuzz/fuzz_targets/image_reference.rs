//! Image references as a client sends them (`name[:tag][@digest]`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = berth_image::Reference::parse(s) {
        // What parses prints back to something that parses the same.
        let again = berth_image::Reference::parse(&r.to_string()).expect("a printed reference parses");
        assert_eq!(again.to_string(), r.to_string());
        let _ = r.familiar();
        let _ = r.with_default_tag();
    }
});
