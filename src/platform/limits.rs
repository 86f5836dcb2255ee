//! How much one callback may hold. The platform sends a few kilobytes per call; these caps leave
//! room for transcripts far longer than any real one while bounding what a hostile or broken body
//! can cost: the parsed form of a body is never more than a small multiple of its size, and the
//! event it announces stays within a known size. A body over a cap is refused (422
//! `too_large_field`, kept raw as rejected), never stored in part.

use serde_json::Value;

/// JSON values (objects, arrays, strings, numbers…) in one body, counted before anything is built.
pub const MAX_VALUES: usize = 20_000;
/// Items of any one array: transcript turns (`callDetailList`), concerns, attributes…
pub const MAX_ARRAY_ITEMS: usize = 2_000;
/// Messages of one SMS callback (`msgList`).
pub const MAX_SMS_MESSAGES: usize = 100;
/// Keys of any one object (`properties`, `varMap`, unknown fields…).
pub const MAX_OBJECT_KEYS: usize = 500;
/// Bytes of any one string (a transcript turn, the analysis basis, a URL…).
pub const MAX_STRING_BYTES: usize = 64 * 1024;
/// Nesting of objects and arrays.
pub const MAX_DEPTH: usize = 32;

/// A field over one of the caps: which one, and by how much. The parser turns it into its own
/// error (this module sits below the parser and knows nothing of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    pub field: String,
    pub reason: String,
}

/// Counts the values of a JSON text without parsing it: every `{`, `[`, and each item after a `,`
/// or a `:` outside strings. A text with more than `MAX_VALUES` is refused before any of it is
/// built in memory.
pub fn check_value_count(body: &[u8]) -> Result<(), TooLarge> {
    let (mut count, mut in_string, mut escaped) = (1usize, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' | b',' | b':' => count += 1,
            _ => {}
        }
        if count > MAX_VALUES {
            return Err(too_large("data", format!("more than {MAX_VALUES} JSON values")));
        }
    }
    Ok(())
}

/// Checks every array, object and string of the envelope against the caps, naming the first field
/// that is over one.
pub fn check_sizes(value: &Value) -> Result<(), TooLarge> {
    walk(value, &mut String::new(), 0)
}

fn walk(value: &Value, path: &mut String, depth: usize) -> Result<(), TooLarge> {
    if depth > MAX_DEPTH {
        return Err(too_large(path_or_root(path), format!("nested deeper than {MAX_DEPTH}")));
    }
    match value {
        Value::String(text) if text.len() > MAX_STRING_BYTES => {
            Err(too_large(path_or_root(path), format!("longer than {MAX_STRING_BYTES} bytes")))
        }
        Value::Array(items) => {
            let cap = if path == "data.msgList" { MAX_SMS_MESSAGES } else { MAX_ARRAY_ITEMS };
            if items.len() > cap {
                return Err(too_large(path_or_root(path), format!("more than {cap} items")));
            }
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, depth + 1)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            if map.len() > MAX_OBJECT_KEYS {
                return Err(too_large(path_or_root(path), format!("more than {MAX_OBJECT_KEYS} keys")));
            }
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                // A key is named only as far as it is harmless to echo.
                path.extend(key.chars().take(64).filter(|c| c.is_ascii_alphanumeric() || *c == '_'));
                walk(item, path, depth + 1)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn path_or_root(path: &str) -> String {
    if path.is_empty() {
        "body".to_owned()
    } else {
        path.to_owned()
    }
}

fn too_large(field: impl Into<String>, reason: String) -> TooLarge {
    TooLarge { field: field.into(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_counted_outside_strings_only() {
        let many = format!("[{}]", vec!["0"; MAX_VALUES + 1].join(","));
        assert!(check_value_count(many.as_bytes()).is_err());
        let quoted = format!("\"{}\"", ",".repeat(MAX_VALUES * 2));
        assert!(check_value_count(quoted.as_bytes()).is_ok(), "commas inside a string are text");
        let escaped = format!("[\"\\\"{}\"]", ",".repeat(MAX_VALUES * 2));
        assert!(check_value_count(escaped.as_bytes()).is_ok(), "an escaped quote does not end the string");
    }

    #[test]
    fn the_first_field_over_a_cap_is_named() {
        let turns: Vec<Value> = (0..=MAX_ARRAY_ITEMS).map(|_| json!({})).collect();
        let body = json!({"dataType": "X", "data": {"callDetailList": turns}});
        assert!(matches!(check_sizes(&body), Err(TooLarge { field, .. }) if field == "data.callDetailList"));
        let sms = json!({"data": {"msgList": vec![json!({}); MAX_SMS_MESSAGES + 1]}});
        assert!(matches!(check_sizes(&sms), Err(TooLarge { field, .. }) if field == "data.msgList"));
        let long = json!({"data": {"callDetailList": [{"text": "x".repeat(MAX_STRING_BYTES + 1)}]}});
        assert!(matches!(check_sizes(&long), Err(TooLarge { field, .. }) if field == "data.callDetailList[0].text"));
        let mut deep = json!(1);
        for _ in 0..=MAX_DEPTH {
            deep = json!([deep]);
        }
        assert!(check_sizes(&deep).is_err());
        assert!(check_sizes(&json!({"data": {"callDetailList": [{"text": "ok"}]}})).is_ok());
    }
}
