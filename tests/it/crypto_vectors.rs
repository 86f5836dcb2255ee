//! The encrypted callback mode against the vendor's own vectors, both directions, without HTTP.

use crate::common::vectors;

use proptest::prelude::*;
use tanyi_relay::platform::crypto::{signature, CallbackCrypto, CryptoError};
use tanyi_relay::platform::xml::encrypt_text;
use vectors::{
    answer, expected_for_negative, same_kind, Answer, ACCEPTED_THOUGH_THE_VENDOR_REFUSES, LENIENT_DECISIONS,
};

fn prefix(random: &str) -> [u8; 16] {
    random.as_bytes().try_into().expect("the vectors' random strings are 16 ASCII characters")
}

#[test]
fn every_positive_vector_is_reproduced_byte_for_byte() {
    let all = vectors::positive();
    assert_eq!(all.len(), 17);
    for v in &all {
        let crypto = CallbackCrypto::new(&v.token, &v.encoding_aes_key, &v.receive_id).expect(&v.name);
        let sealed = crypto.seal(&v.plaintext, &v.timestamp, &v.nonce, &prefix(&v.random));
        assert_eq!(sealed.encrypt, v.encrypt, "{}: ciphertext", v.name);
        assert_eq!(sealed.msg_signature, v.msg_signature, "{}: signature", v.name);
        assert_eq!(sealed.xml, v.xml, "{}: xml", v.name);
        assert_eq!(signature(&v.token, &v.timestamp, &v.nonce, &v.encrypt), v.msg_signature, "{}", v.name);
    }
}

#[test]
fn every_positive_vector_is_decrypted_in_each_form_senders_use() {
    for v in vectors::positive() {
        let crypto = CallbackCrypto::new(&v.token, &v.encoding_aes_key, &v.receive_id).expect(&v.name);
        assert_eq!(crypto.decrypt(&v.encrypt).as_deref(), Ok(v.plaintext.as_str()), "{}", v.name);
        for (form, xml) in [("xml", &v.xml), ("xml_testdemo_style", &v.xml_testdemo_style)] {
            let text = encrypt_text(xml.as_bytes()).unwrap_or_else(|e| panic!("{} {form}: {e}", v.name));
            let opened = crypto.open(&v.msg_signature, &v.timestamp, &v.nonce, &text);
            assert_eq!(opened.as_deref(), Ok(v.plaintext.as_str()), "{} {form}", v.name);
        }
        let twice = v.encrypt_urlencoded.replace('%', "%25");
        for text in [&v.encrypt, &v.encrypt_urlencoded, &twice] {
            let opened = crypto.open(&v.msg_signature, &v.timestamp, &v.nonce, text);
            assert_eq!(opened.as_deref(), Ok(v.plaintext.as_str()), "{}: {text}", v.name);
        }
    }
}

#[test]
fn every_negative_vector_gets_its_documented_answer() {
    let all = vectors::negative();
    assert_eq!(all.len(), 41);
    for input in &all {
        assert!(!input.accepted, "{}", input.name);
        let got = answer(input);
        let expected = expected_for_negative(input);
        assert!(same_kind(&got, &expected), "{}: expected {expected:?}, got {got:?}", input.name);
    }
    // The one accepted on purpose decrypts to the message that was signed.
    let still_encoded = all.iter().find(|v| v.name == ACCEPTED_THOUGH_THE_VENDOR_REFUSES[0]).unwrap();
    let source = vectors::positive().into_iter().find(|p| p.msg_signature == still_encoded.msg_signature).unwrap();
    assert_eq!(answer(still_encoded), Answer::Accepted(source.plaintext));
}

#[test]
fn every_lenient_vector_follows_the_documented_decision() {
    let all = vectors::lenient();
    assert_eq!(all.len(), LENIENT_DECISIONS.len(), "every lenient vector needs a decision");
    for input in &all {
        assert!(input.accepted, "{}", input.name);
        let (_, accept) = LENIENT_DECISIONS
            .iter()
            .find(|(name, _)| *name == input.name)
            .unwrap_or_else(|| panic!("{}: no decision recorded", input.name));
        let got = answer(input);
        if *accept {
            assert_eq!(
                got,
                Answer::Accepted(input.result.clone().expect("accepted vectors have a result")),
                "{}",
                input.name
            );
        } else {
            assert!(
                matches!(got, Answer::Kept(CryptoError::Undecryptable(_))),
                "{}: expected a refusal, got {got:?}",
                input.name
            );
        }
    }
}

const KEY: &str = "INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCknw";

proptest! {
    #[test]
    fn any_utf8_message_and_receive_id_round_trip(message in any::<String>(), receive_id in any::<String>(), seed in any::<[u8; 16]>()) {
        let crypto = CallbackCrypto::new("token", KEY, &receive_id).unwrap();
        let encrypted = crypto.encrypt_with_prefix(&message, &seed);
        prop_assert_eq!(crypto.decrypt(&encrypted), Ok(message.clone()));
        let sealed = crypto.seal(&message, "1700000000000", "nonce", &seed);
        let text = encrypt_text(sealed.xml.as_bytes()).unwrap();
        prop_assert_eq!(crypto.open(&sealed.msg_signature, &sealed.timestamp, &sealed.nonce, &text), Ok(message));
    }

    #[test]
    fn another_receive_id_is_refused(message in any::<String>(), a in "[a-z0-9]{0,12}", b in "[a-z0-9]{0,12}") {
        prop_assume!(a != b);
        let sender = CallbackCrypto::new("token", KEY, &a).unwrap();
        let receiver = CallbackCrypto::new("token", KEY, &b).unwrap();
        prop_assert_eq!(receiver.decrypt(&sender.encrypt(&message)), Err(CryptoError::ReceiveIdMismatch));
    }

    #[test]
    fn any_change_to_the_ciphertext_breaks_the_signature(message in ".{0,64}", at in any::<prop::sample::Index>()) {
        let crypto = CallbackCrypto::new("token", KEY, "").unwrap();
        let sealed = crypto.seal(&message, "1", "2", b"0123456789abcdef");
        let mut tampered: Vec<u8> = sealed.encrypt.clone().into_bytes();
        let i = at.index(tampered.len());
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        prop_assert_eq!(crypto.open(&sealed.msg_signature, "1", "2", &tampered), Err(CryptoError::BadSignature));
    }

    #[test]
    fn arbitrary_ciphertext_never_panics(text in "[A-Za-z0-9+/=]{0,200}") {
        let crypto = CallbackCrypto::new("token", KEY, "").unwrap();
        let _ = crypto.decrypt(&text);
    }
}
