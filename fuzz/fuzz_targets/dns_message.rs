//! The embedded DNS server's parsing of a message a container sends, and
//! the replies built from what it parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|msg: &[u8]| {
    let _ = berth_network::dns::id_of(msg);
    let _ = berth_network::dns::error_reply(msg, 2);
    if let Ok(q) = berth_network::dns::parse(msg) {
        let _ = berth_network::dns::reverse_v4(&q.name);
    }
});
