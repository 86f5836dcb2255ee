//! The platform's "secure callback" mode (the WeCom `WXBizMsgCrypt` scheme): AES-256-CBC with the
//! IV taken from the key, a PKCS#7-style pad to 32 bytes, and a SHA-1 signature over the sorted
//! token, timestamp, nonce and ciphertext. Byte-compatible with the vendor's Java code (see the
//! vectors in `tests/fixtures/vectors`), but stricter where the vendor is unsafe: the padding is
//! verified, the length field is checked against the bytes left, signatures are compared in
//! constant time.

use std::borrow::Cow;

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use percent_encoding::percent_decode_str;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

type Encryptor = cbc::Encryptor<aes::Aes256>;
type Decryptor = cbc::Decryptor<aes::Aes256>;

const BLOCK: usize = 32;
const RANDOM_LEN: usize = 16;
const LENGTH_LEN: usize = 4;
const KEY_CHARS: usize = 43;

/// Ciphertext as senders write it: padding optional, and the bits a 43-character key leaves over
/// are ignored (the vendor's decoder does the same, so `…Cknw` and `…Cknx` are one key).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("must be exactly 43 characters (it has {0})")]
    WrongLength(usize),
    #[error("is not base64")]
    NotBase64,
    #[error("must not be empty")]
    EmptyToken,
}

/// Why an encrypted callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Nothing here can be trusted: not stored.
    #[error("the signature does not match")]
    BadSignature,
    /// Signed by someone with the token, but not decryptable with our key: kept as rejected, so
    /// that an operator can fix the key and reprocess.
    #[error("the payload cannot be decrypted: {0}")]
    Undecryptable(&'static str),
    #[error("the receive id does not match")]
    ReceiveIdMismatch,
}

/// One account's callback crypto settings.
#[derive(Clone)]
pub struct CallbackCrypto {
    token: Secret,
    key: [u8; 32],
    receive_id: String,
}

impl std::fmt::Debug for CallbackCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackCrypto").field("receive_id", &self.receive_id).finish_non_exhaustive()
    }
}

/// What the platform sends for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub encrypt: String,
    pub msg_signature: String,
    pub timestamp: String,
    pub nonce: String,
    pub xml: String,
}

impl CallbackCrypto {
    pub fn new(token: &str, encoding_aes_key: &str, receive_id: &str) -> Result<Self, KeyError> {
        if token.is_empty() {
            return Err(KeyError::EmptyToken);
        }
        Ok(Self { token: Secret::new(token), key: decode_key(encoding_aes_key)?, receive_id: receive_id.to_owned() })
    }

    /// The signature the platform puts in `msg_signature`.
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        signature(self.token.expose(), timestamp, nonce, encrypt)
    }

    /// Encrypts `message` behind the given 16-byte prefix (the vendor uses 16 random characters).
    pub fn encrypt_with_prefix(&self, message: &str, prefix: &[u8; RANDOM_LEN]) -> String {
        let receive_id = self.receive_id.as_bytes();
        let unpadded = RANDOM_LEN + LENGTH_LEN + message.len() + receive_id.len();
        let pad = BLOCK - unpadded % BLOCK;
        let mut buffer = Vec::with_capacity(unpadded + pad);
        buffer.extend_from_slice(prefix);
        // The format has four bytes for the length; a message of 4 GiB cannot reach here through
        // any body limit, but refuse to wrap silently all the same.
        let length = u32::try_from(message.len()).expect("message shorter than 4 GiB");
        buffer.extend_from_slice(&length.to_be_bytes());
        buffer.extend_from_slice(message.as_bytes());
        buffer.extend_from_slice(receive_id);
        buffer.resize(unpadded + pad, pad as u8);
        let iv = &self.key[..16];
        let ciphertext = Encryptor::new(&self.key.into(), iv.into())
            .encrypt_padded_mut::<NoPadding>(&mut buffer, unpadded + pad)
            .expect("buffer is a whole number of blocks");
        STANDARD.encode(ciphertext)
    }

    /// Encrypts behind a fresh random prefix of 16 letters and digits.
    pub fn encrypt(&self, message: &str) -> String {
        self.encrypt_with_prefix(message, &random_prefix())
    }

    /// Encrypts, signs and wraps `message` exactly as the platform's sender does.
    pub fn seal(&self, message: &str, timestamp: &str, nonce: &str, prefix: &[u8; RANDOM_LEN]) -> Sealed {
        let encrypt = self.encrypt_with_prefix(message, prefix);
        let msg_signature = self.signature(timestamp, nonce, &encrypt);
        let xml = envelope_xml(&encrypt, &msg_signature, timestamp, nonce);
        Sealed { encrypt, msg_signature, timestamp: timestamp.to_owned(), nonce: nonce.to_owned(), xml }
    }

    /// Decrypts ciphertext whose signature was already checked.
    pub fn decrypt(&self, encrypt: &str) -> Result<String, CryptoError> {
        let ciphertext = decode_ciphertext(encrypt)?;
        if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
            return Err(CryptoError::Undecryptable("the ciphertext is not a whole number of AES blocks"));
        }
        let mut buffer = ciphertext;
        let iv = &self.key[..16];
        let plain = Decryptor::new(&self.key.into(), iv.into())
            .decrypt_padded_mut::<NoPadding>(&mut buffer)
            .map_err(|_| CryptoError::Undecryptable("AES decryption failed"))?;
        let content = strip_padding(plain)?;
        if content.len() < RANDOM_LEN + LENGTH_LEN {
            return Err(CryptoError::Undecryptable("the decrypted data is too short"));
        }
        let (header, rest) = content.split_at(RANDOM_LEN + LENGTH_LEN);
        let declared = u32::from_be_bytes([header[16], header[17], header[18], header[19]]) as usize;
        // The vendor allocates `declared` bytes before any check; a wrong key or a forged buffer
        // then asks for gigabytes. Check against what is actually there first.
        if declared > rest.len() {
            return Err(CryptoError::Undecryptable("the length field exceeds the decrypted data"));
        }
        let (message, receive_id) = rest.split_at(declared);
        if receive_id != self.receive_id.as_bytes() {
            return Err(CryptoError::ReceiveIdMismatch);
        }
        String::from_utf8(message.to_vec()).map_err(|_| CryptoError::Undecryptable("the message is not UTF-8"))
    }

    /// The receive path: verifies `msg_signature` over the ciphertext text as received, or as
    /// percent-decoded once or twice (senders differ), then decrypts the text the signature covers.
    pub fn open(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<String, CryptoError> {
        let signed = self.verify(msg_signature, timestamp, nonce, encrypt)?;
        self.decrypt(&signed)
    }

    /// Verifies `msg_signature` only, and returns the ciphertext text it covers (as received, or
    /// percent-decoded once or twice).
    pub fn verify(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<String, CryptoError> {
        encodings_of(encrypt)
            .into_iter()
            .find(|candidate| {
                let expected = self.signature(timestamp, nonce, candidate);
                bool::from(expected.as_bytes().ct_eq(msg_signature.as_bytes()))
            })
            .map(|candidate| candidate.into_owned())
            .ok_or(CryptoError::BadSignature)
    }
}

/// SHA-1 over token, timestamp, nonce and ciphertext sorted as Java sorts strings (UTF-16 code
/// units), lowercase hex.
pub fn signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let mut parts = [token, timestamp, nonce, encrypt];
    parts.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
    let mut sha = Sha1::new();
    for part in parts {
        sha.update(part.as_bytes());
    }
    hex::encode(sha.finalize())
}

/// The POST body exactly as the vendor's XML generator writes it (values inserted unescaped).
pub fn envelope_xml(encrypt: &str, msg_signature: &str, timestamp: &str, nonce: &str) -> String {
    format!(
        "<xml>\n<Encrypt><![CDATA[{encrypt}]]></Encrypt>\n<MsgSignature><![CDATA[{msg_signature}]]></MsgSignature>\n\
         <TimeStamp>{timestamp}</TimeStamp>\n<Nonce><![CDATA[{nonce}]]></Nonce>\n</xml>"
    )
}

fn decode_key(encoding_aes_key: &str) -> Result<[u8; 32], KeyError> {
    let chars = encoding_aes_key.chars().count();
    if chars != KEY_CHARS {
        return Err(KeyError::WrongLength(chars));
    }
    let bytes = LENIENT.decode(format!("{encoding_aes_key}=")).map_err(|_| KeyError::NotBase64)?;
    bytes.try_into().map_err(|_| KeyError::NotBase64)
}

/// Standard or URL-safe base64, with or without padding, line breaks and spaces ignored. Any other
/// character is refused (the vendor silently skips them).
fn decode_ciphertext(text: &str) -> Result<Vec<u8>, CryptoError> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            other => other,
        })
        .collect();
    LENIENT.decode(cleaned).map_err(|_| CryptoError::Undecryptable("the ciphertext is not base64"))
}

/// The pad is 1 to 32 bytes, each holding the pad length. The vendor reads only the last byte;
/// every pad byte is checked here so that a truncated or forged buffer is not taken as a message.
fn strip_padding(buffer: &[u8]) -> Result<&[u8], CryptoError> {
    let pad = buffer.last().copied().unwrap_or(0) as usize;
    if pad == 0 || pad > BLOCK || pad > buffer.len() {
        return Err(CryptoError::Undecryptable("the padding is invalid"));
    }
    let (content, padding) = buffer.split_at(buffer.len() - pad);
    if padding.iter().any(|&b| b as usize != pad) {
        return Err(CryptoError::Undecryptable("the padding is invalid"));
    }
    Ok(content)
}

/// The text itself, then percent-decoded once and twice while that changes it. Base64 never
/// contains `%`, so for a raw ciphertext this is just the text. `+` is never turned into a space.
fn encodings_of(text: &str) -> Vec<Cow<'_, str>> {
    let mut all = vec![Cow::Borrowed(text)];
    for _ in 0..2 {
        let last = all.last().expect("not empty");
        if !last.contains('%') {
            break;
        }
        match percent_decode_str(last).decode_utf8() {
            Ok(decoded) if decoded != *last => {
                let decoded = decoded.into_owned();
                all.push(Cow::Owned(decoded));
            }
            _ => break,
        }
    }
    all
}

fn random_prefix() -> [u8; RANDOM_LEN] {
    const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; RANDOM_LEN];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source works");
    // 256 % 62 != 0 gives a slight bias; the prefix only has to differ between messages.
    bytes.map(|b| ALPHANUMERIC[b as usize % ALPHANUMERIC.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCknw";

    #[test]
    fn keys_must_be_43_base64_characters() {
        assert_eq!(CallbackCrypto::new("t", &KEY[..42], "").err(), Some(KeyError::WrongLength(42)));
        assert_eq!(CallbackCrypto::new("t", &format!("{KEY}="), "").err(), Some(KeyError::WrongLength(44)));
        assert_eq!(CallbackCrypto::new("t", &format!("{}!", &KEY[..42]), "").err(), Some(KeyError::NotBase64));
        assert_eq!(CallbackCrypto::new("", KEY, "").err(), Some(KeyError::EmptyToken));
    }

    #[test]
    fn debug_output_hides_token_and_key() {
        let crypto = CallbackCrypto::new("AIGbuK3sOV", KEY, "rid").unwrap();
        let dump = format!("{crypto:?}");
        assert!(!dump.contains("AIGbuK3sOV") && !dump.contains("INnZ"), "{dump}");
    }

    #[test]
    fn random_prefixes_differ_and_are_alphanumeric() {
        let a = random_prefix();
        assert!(a.iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(a, random_prefix());
    }

    #[test]
    fn percent_encodings_are_peeled_at_most_twice() {
        let peeled: Vec<String> = encodings_of("a%252B%3D").into_iter().map(Cow::into_owned).collect();
        assert_eq!(peeled, ["a%252B%3D", "a%2B=", "a+="]);
        assert_eq!(encodings_of("ab+c/=").len(), 1);
    }
}
