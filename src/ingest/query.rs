//! Query-string values, decoded the way the platform's integrators need: percent-decoding only.
//! `+` stays `+` (form decoding would turn it into a space and corrupt base64 and keys).

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// The first value of `name`, percent-decoded once. `None` when absent or not UTF-8.
pub fn param<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode_str(key).decode_utf8().ok()?;
        (key == name).then(|| percent_decode_str(value).decode_utf8().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_percent_decoded_but_plus_is_kept() {
        let q = Some("a=1&key=ab%2Bc%3D%3D&b=x+y");
        assert_eq!(param(q, "key").as_deref(), Some("ab+c=="));
        assert_eq!(param(q, "b").as_deref(), Some("x+y"));
        assert_eq!(param(q, "missing"), None);
        assert_eq!(param(None, "key"), None);
    }

    #[test]
    fn the_first_occurrence_wins_and_bare_keys_are_empty() {
        assert_eq!(param(Some("key=one&key=two"), "key").as_deref(), Some("one"));
        assert_eq!(param(Some("key"), "key").as_deref(), Some(""));
        assert_eq!(param(Some("key=%FF"), "key"), None);
    }
}
