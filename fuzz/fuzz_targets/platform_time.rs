//! Any time text in a callback: a UTC instant or nothing, never a panic.
#![no_main]

use chrono::FixedOffset;
use libfuzzer_sys::fuzz_target;
use tanyi_relay::platform::localtime::parse_platform_time;

fuzz_target!(|text: &str| {
    for hours in [-12, 0, 8, 14] {
        let offset = FixedOffset::east_opt(hours * 3600).expect("a valid offset");
        let _ = parse_platform_time(text, offset);
    }
});
