//! Secrets that are public because they appear in this repository (the defaults, the deployment
//! examples, the documentation, the Standard Webhooks specification's example) or that read as a
//! placeholder. A production deployment refuses every one: copying an example must never work.

use super::DEVELOPMENT_CALLBACK_KEY;

/// Exact values published in this repository's examples and documentation.
const PUBLISHED: &[&str] = &[
    DEVELOPMENT_CALLBACK_KEY,
    // The Standard Webhooks specification's example secret, used in the documentation and examples.
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "whsec_aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=",
    // The tokens and EncodingAESKeys of the vendor's test vectors (tests/fixtures/vectors).
    "0cb_Token-7.x",
    "AIGbuK3sOV",
    "AIGbuK3sOW",
    "gorPOef3hamPyU63",
    "zzTopToken",
    "44ApUGHyrhnk1WEygV7BtVZIxNU0C7N7SDgVHwDrT5U",
    "8ImmNlm4SlQ2/+SoXsCoCzl1TuozJfCcoBU6872qIeQ",
    "INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCknw",
    "INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCknx",
    "TxJdJ48RbWK4Ad0Apejh4pjb0toqUoz/Ngu1m7CoL6A",
    "u2Al9BtKa3ub0qhONdQQStUnEjOzdVSBMUvwOitvARM",
    // The mock platform's credentials (printed by `mock-platform`).
    "mockAppKey000001",
    "mockAppSecret0000000000000000001",
];

/// Words that mark a value someone was meant to replace.
const PLACEHOLDER_WORDS: &[&str] =
    &["change-me", "changeme", "change_me", "replace", "example", "placeholder", "your-", "your_", "dev-only", "xxxx"];

/// Whether `value` is a published example or reads as a placeholder.
pub fn is_public_example(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    PUBLISHED.contains(&value)
        || PLACEHOLDER_WORDS.iter().any(|word| lower.contains(word))
        || lower.starts_with("a-long-random")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_and_placeholder_values_are_public_and_random_ones_are_not() {
        for value in [
            DEVELOPMENT_CALLBACK_KEY,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "change-me-to-a-long-random-string",
            "replaced-by-the-environment-000",
            "a-long-random-admin-token-000000",
            "YOUR-KEY-HERE-0000000",
        ] {
            assert!(is_public_example(value), "{value}");
        }
        assert!(!is_public_example("q3V9pYxK2m7LwZ8rT4nB6cJ1"));
    }
}
