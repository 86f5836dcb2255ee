//! Any XML body of an encrypted callback: the `Encrypt` text or an error, never a panic, and never
//! a document with a DOCTYPE declaration accepted (text that merely looks like one, inside CDATA
//! or a comment, is data).
#![no_main]

use libfuzzer_sys::fuzz_target;
use quick_xml::events::Event;
use quick_xml::Reader;
use tanyi_relay::platform::xml::encrypt_text;

/// Whether a plain reading of the document meets a DOCTYPE before its end or its first error.
fn declares_a_doctype(body: &[u8]) -> bool {
    let mut reader = Reader::from_reader(body);
    loop {
        match reader.read_event() {
            Ok(Event::DocType(_)) => return true,
            Ok(Event::Eof) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

fuzz_target!(|body: &[u8]| {
    if encrypt_text(body).is_ok() {
        assert!(!declares_a_doctype(body), "a document with a DOCTYPE was accepted");
    }
});
