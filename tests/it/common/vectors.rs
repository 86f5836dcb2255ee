//! The vendor's test vectors (`tests/fixtures/vectors`) and how the relay answers each one.
#![allow(dead_code)] // shared by test binaries that each use part of it

use std::path::PathBuf;

use serde::Deserialize;
use tanyi_relay::platform::crypto::{CallbackCrypto, CryptoError};
use tanyi_relay::platform::xml::encrypt_text;

#[derive(Debug, Clone, Deserialize)]
pub struct Positive {
    pub name: String,
    pub token: String,
    pub encoding_aes_key: String,
    pub receive_id: String,
    pub random: String,
    pub timestamp: String,
    pub nonce: String,
    pub plaintext: String,
    pub encrypt: String,
    pub msg_signature: String,
    pub xml: String,
    pub encrypt_urlencoded: String,
    pub xml_testdemo_style: String,
}

/// An input the vendor's receive path was given, from the negative or the lenient file.
#[derive(Debug, Clone, Deserialize)]
pub struct Received {
    pub name: String,
    pub api: String,
    pub token: String,
    pub encoding_aes_key: String,
    pub receive_id: String,
    #[serde(default)]
    pub msg_signature: String,
    #[serde(default)]
    pub timestamp: String,
    #[serde(default)]
    pub nonce: String,
    pub xml: Option<String>,
    pub echostr: Option<String>,
    pub accepted: bool,
    pub result: Option<String>,
    pub error_code: Option<i64>,
}

fn load<T: for<'de> Deserialize<'de>>(file: &str) -> Vec<T> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vectors").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn positive() -> Vec<Positive> {
    load("callback_crypto.json")
}

pub fn negative() -> Vec<Received> {
    load("callback_crypto_negative.json")
}

pub fn lenient() -> Vec<Received> {
    load("callback_crypto_lenient.json")
}

/// What the relay does with one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Decrypted: this plaintext goes on to be parsed and stored.
    Accepted(String),
    /// 401, nothing stored.
    BadSignature,
    /// 400 `malformed_xml`, nothing stored.
    BadXml,
    /// 400, signed by the token holder: the raw body is kept as rejected.
    Kept(CryptoError),
    /// The account's settings are refused at start-up.
    Misconfigured,
}

/// The relay's receive path, without HTTP.
pub fn answer(input: &Received) -> Answer {
    let Ok(crypto) = CallbackCrypto::new(&input.token, &input.encoding_aes_key, &input.receive_id) else {
        return Answer::Misconfigured;
    };
    let encrypt = match (input.api.as_str(), &input.xml, &input.echostr) {
        ("DecryptMsg", Some(xml), _) => match encrypt_text(xml.as_bytes()) {
            Ok(text) => text,
            Err(_) => return Answer::BadXml,
        },
        ("VerifyURL", _, Some(echostr)) => echostr.clone(),
        other => panic!("{}: unexpected input shape {other:?}", input.name),
    };
    match crypto.open(&input.msg_signature, &input.timestamp, &input.nonce, &encrypt) {
        Ok(plaintext) => Answer::Accepted(plaintext),
        Err(CryptoError::BadSignature) => Answer::BadSignature,
        Err(other) => Answer::Kept(other),
    }
}

/// Inputs the vendor refuses that the relay accepts on purpose.
pub const ACCEPTED_THOUGH_THE_VENDOR_REFUSES: &[&str] = &[
    // The Encrypt text is percent-encoded and the signature covers the raw base64: this is exactly
    // the form the vendor's own sender demo posts (`xml_testdemo_style`), so it must be accepted.
    "still_url_encoded",
];

/// The relay's decision for each input the vendor accepts (`callback_crypto_lenient.json`).
/// `true`: accepted too; `false`: refused because accepting it is unsafe or meaningless.
pub const LENIENT_DECISIONS: &[(&str, bool)] = &[
    // A buffer cut short by a block: its last byte is message text, not padding.
    ("truncated_pad_block_accepted", false),
    // XML shape: harmless, the signature still covers the text used.
    ("xml_root_not_xml", true),
    ("xml_nested_encrypt", true),
    ("xml_two_encrypt_first_wins", true),
    ("xml_no_cdata_and_char_refs", true),
    ("xml_encrypt_split_by_comment", true),
    ("xml_body_fields_ignored", true),
    // Base64 spelling: white space (line-wrapped encoders), missing padding and the URL-safe
    // alphabet are common and unambiguous; other characters are refused, not skipped.
    ("base64_with_whitespace_resigned", true),
    ("base64_with_junk_chars_resigned", false),
    ("base64_without_padding_resigned", true),
    ("base64_urlsafe_alphabet_resigned", true),
    // The two bits a 43-character key leaves over carry nothing: same key.
    ("key_last_char_nonzero_trailing_bits", true),
    // Padding: every pad byte must equal the pad length (1 to 32).
    ("padding_only_last_byte_checked", false),
    ("pkcs7_16_byte_block_padding", true),
    ("no_padding_last_byte_gt_32", false),
    // The 16-byte prefix is random by design.
    ("random_prefix_not_checked", true),
];

/// The relay's answer for an input the vendor refuses, derived from the vendor's error code.
pub fn expected_for_negative(input: &Received) -> Answer {
    if ACCEPTED_THOUGH_THE_VENDOR_REFUSES.contains(&input.name.as_str()) {
        return Answer::Accepted(String::new()); // compared by kind only; see the test
    }
    match (input.api.as_str(), input.error_code) {
        ("constructor", _) => Answer::Misconfigured,
        // A key that is not base64 is refused at start-up, before any callback.
        (_, Some(-40007)) if input.name == "key_with_non_base64_char" => Answer::Misconfigured,
        (_, Some(-40001)) => Answer::BadSignature,
        (_, Some(-40002)) => Answer::BadXml,
        (_, Some(-40005)) if input.name.starts_with("wrong_receive_id") => Answer::Kept(CryptoError::ReceiveIdMismatch),
        // -40005 from garbage bytes, -40007, -40008, and the vendor's out-of-memory crashes.
        _ => Answer::Kept(CryptoError::Undecryptable("")),
    }
}

/// Whether two answers are of the same kind (the reason texts of `Undecryptable` may differ).
pub fn same_kind(a: &Answer, b: &Answer) -> bool {
    match (a, b) {
        (Answer::Kept(CryptoError::Undecryptable(_)), Answer::Kept(CryptoError::Undecryptable(_))) => true,
        (Answer::Kept(x), Answer::Kept(y)) => x == y,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}
