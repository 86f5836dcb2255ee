//! Reads the `Encrypt` text out of an encrypted callback's XML body. No DTD is ever read: any
//! DOCTYPE is refused, so no entity can be declared, expanded or fetched.

use quick_xml::events::Event;
use quick_xml::Reader;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct XmlError(String);

fn error(message: impl Into<String>) -> XmlError {
    XmlError(message.into())
}

/// The text content of the first `Encrypt` element anywhere in the document (CDATA or not, with
/// character references decoded and comments skipped), as the vendor's DOM reader gives it. The
/// whole document must be well-formed.
pub fn encrypt_text(body: &[u8]) -> Result<String, XmlError> {
    let mut reader = Reader::from_reader(body);
    reader.config_mut().check_end_names = true;
    let mut depth = 0usize;
    let mut root_seen = false;
    // The depth of the Encrypt element while its text is being read.
    let mut capturing: Option<usize> = None;
    let mut text: Option<String> = None;
    loop {
        let event = reader.read_event().map_err(|e| error(format!("not well-formed XML: {e}")))?;
        match event {
            Event::DocType(_) => return Err(error("a DOCTYPE is not allowed")),
            Event::Start(start) => {
                if depth == 0 && root_seen {
                    return Err(error("more than one root element"));
                }
                root_seen = true;
                depth += 1;
                if text.is_none() && capturing.is_none() && start.name().as_ref() == b"Encrypt" {
                    capturing = Some(depth);
                    text = Some(String::new());
                }
            }
            Event::Empty(empty) => {
                if depth == 0 && root_seen {
                    return Err(error("more than one root element"));
                }
                root_seen = true;
                if text.is_none() && empty.name().as_ref() == b"Encrypt" {
                    text = Some(String::new());
                }
            }
            Event::End(_) => {
                if capturing == Some(depth) {
                    capturing = None;
                }
                depth = depth.saturating_sub(1);
            }
            Event::Text(chunk) => {
                let chunk = chunk.unescape().map_err(|e| error(format!("bad text: {e}")))?;
                if depth == 0 {
                    if !chunk.trim().is_empty() {
                        return Err(error("content outside the root element"));
                    }
                } else if let (Some(_), Some(text)) = (capturing, text.as_mut()) {
                    text.push_str(&chunk);
                }
            }
            Event::CData(chunk) => {
                if depth == 0 {
                    return Err(error("content outside the root element"));
                }
                if let (Some(_), Some(text)) = (capturing, text.as_mut()) {
                    let chunk = std::str::from_utf8(&chunk).map_err(|_| error("CDATA is not UTF-8"))?;
                    text.push_str(chunk);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !root_seen {
        return Err(error("the body is empty"));
    }
    if depth != 0 {
        return Err(error("not well-formed XML: an element is not closed"));
    }
    text.ok_or_else(|| error("no Encrypt element"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cdata_plain_text_and_character_references() {
        assert_eq!(encrypt_text(b"<xml><Encrypt><![CDATA[a+b/=]]></Encrypt></xml>").unwrap(), "a+b/=");
        assert_eq!(encrypt_text(b"<xml><Encrypt>a&#43;b&#47;&#61;</Encrypt></xml>").unwrap(), "a+b/=");
        assert_eq!(encrypt_text(b"<xml><Encrypt>ab<!-- x -->cd</Encrypt></xml>").unwrap(), "abcd");
        assert_eq!(encrypt_text(b"<?xml version=\"1.0\"?>\n<xml><Encrypt/></xml>").unwrap(), "");
    }

    #[test]
    fn refuses_what_is_not_one_well_formed_document_with_an_encrypt() {
        for body in [
            &b""[..],
            b"{\"dataType\":\"ROBOT_CALL_JOB\"}",
            b"<xml><Encrypt>abc</Encrypt>",
            b"<xml><Encrypt>abc</Nonce></xml>",
            b"<xml></xml><xml></xml>",
            b"<xml><x:Encrypt>abc</x:Encrypt></xml>",
            b"<!DOCTYPE xml><xml><Encrypt>abc</Encrypt></xml>",
            b"<xml><Encrypt>&xxe;</Encrypt></xml>",
        ] {
            assert!(encrypt_text(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
