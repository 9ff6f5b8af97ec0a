//! `POST /containers/create` bodies, through the wire types and the one
//! conversion to the engine's request.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = serde_json::from_slice::<berth_api_types::ContainerConfig>(data) else { return };
    let _ = berth_api::convert::create_request(Some("fuzz".into()), c);
});
