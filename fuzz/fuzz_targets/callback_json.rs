//! Any body an authenticated sender posts: parsing returns a callback or an error, never panics,
//! and a parsed callback hashes the same when parsed again.
#![no_main]

use chrono::FixedOffset;
use libfuzzer_sys::fuzz_target;
use tanyi_relay::platform::callback::parse_callback;

fuzz_target!(|body: &[u8]| {
    let offset = FixedOffset::east_opt(8 * 3600).expect("a valid offset");
    if let Ok(callback) = parse_callback(body, offset) {
        let again = parse_callback(body, offset).expect("the same body parses again");
        assert_eq!(callback.content_sha256, again.content_sha256);
    }
});
