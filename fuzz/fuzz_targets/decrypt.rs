//! Any ciphertext and signature: opening gives a message or an error, never a panic; and any
//! message sealed with the key opens to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tanyi_relay::platform::crypto::CallbackCrypto;

// The vendor's demo key (tests/fixtures/vectors/callback_crypto.json).
const TOKEN: &str = "AIGbuK3sOV";
const AES_KEY: &str = "INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCknw";

fuzz_target!(|input: &[u8]| {
    let crypto = CallbackCrypto::new(TOKEN, AES_KEY, "").expect("the demo key is valid");
    let text = String::from_utf8_lossy(input);
    let mut parts = text.splitn(4, '\n');
    let (signature, timestamp, nonce, encrypt) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let _ = crypto.decrypt(&text);
    let _ = crypto.open(signature, timestamp, nonce, encrypt);

    let sealed = crypto.seal(&text, "1678759048896", "8214825565", b"Xq3kP9zLm2Rt7VwY");
    let opened = crypto.open(&sealed.msg_signature, "1678759048896", "8214825565", &sealed.encrypt);
    assert_eq!(opened.as_deref().ok(), Some(text.as_ref()), "a sealed message opens to itself");
});
