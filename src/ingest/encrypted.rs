//! The encrypted mode: the GET URL check and encrypted POSTs. Only the signature in the URL counts
//! (the copies inside the XML are ignored, as the vendor ignores them).

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use percent_encoding::percent_decode;

use super::{ack, find_account, query, text, IngestError, IngestState};
use crate::account::Account;
use crate::domain::Source;
use crate::platform::crypto::{CallbackCrypto, CryptoError};
use crate::platform::xml::encrypt_text;
use crate::telemetry::loggable;

/// A URL check's `echostr` is a short random text; nothing longer is decrypted and echoed.
pub const MAX_ECHOSTR_CHARS: usize = 512;
pub const MAX_ECHO_BYTES: usize = 256;
/// A URL check is live: its timestamp must be this close to now (POSTs have no such window, since
/// the platform re-sends a failed callback for a day).
pub const URL_CHECK_WINDOW_SECS: i64 = 300;

/// `GET /callbacks/{account}?msg_signature=&timestamp=&nonce=&echostr=`: the platform checks the
/// URL by asking us to decrypt `echostr`. Nothing is stored.
///
/// The signature of a GET has the same form as a POST's, so an encrypted callback someone has seen
/// could be replayed as a URL check to have it decrypted. So only what a URL check is gets echoed:
/// a fresh timestamp, a short `echostr`, and a text that is not a callback.
pub(super) async fn verify_url(
    State(state): State<IngestState>,
    Path(account_name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, IngestError> {
    let account = find_account(&state, &account_name)?;
    let crypto = crypto_of(account)?;
    let query = query.as_deref();
    let (signature, timestamp, nonce) = signed_params(query)?;
    let echostr = query::param(query, "echostr").ok_or(IngestError::MissingParameter("echostr"))?;
    let refuse = |problem: IngestError| {
        tracing::warn!(account = %account.name, problem = %problem, "URL check refused");
        problem
    };
    if echostr.chars().count() > MAX_ECHOSTR_CHARS {
        return Err(refuse(IngestError::InvalidEchostr("too long for a URL check")));
    }
    let signed = crypto.verify(&signature, &timestamp, &nonce, &echostr).map_err(|e| refuse(IngestError::Crypto(e)))?;
    if !is_live(&timestamp, chrono::Utc::now().timestamp()) {
        return Err(refuse(IngestError::StaleTimestamp));
    }
    let echo = crypto.decrypt(&signed).map_err(|e| refuse(IngestError::Crypto(e)))?;
    if echo.len() > MAX_ECHO_BYTES {
        return Err(refuse(IngestError::InvalidEchostr("too long for a URL check")));
    }
    if matches!(echo.trim_start().chars().next(), Some('{' | '[')) {
        return Err(refuse(IngestError::InvalidEchostr("a callback, not a URL check")));
    }
    tracing::info!(account = %account.name, "URL check answered");
    Ok(text(echo))
}

/// Whether a URL check's timestamp (seconds, or milliseconds as the vendor's demos send) is within
/// the window around `now` (seconds).
fn is_live(timestamp: &str, now: i64) -> bool {
    let Ok(value) = timestamp.trim().parse::<i64>() else { return false };
    // Milliseconds since 1970 passed 10^11 in 1973; seconds will not reach it for millennia.
    let seconds = if value.abs() >= 100_000_000_000 { value / 1000 } else { value };
    (seconds - now).abs() <= URL_CHECK_WINDOW_SECS
}

pub(super) async fn receive(
    state: &IngestState,
    account: &Account,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, IngestError> {
    let crypto = crypto_of(account)?;
    let (signature, timestamp, nonce) = signed_params(query)?;
    // Until the signature is checked nothing in the body is trusted, so nothing is stored, and the
    // body is read within the smaller budget and shorter deadline of unauthenticated work.
    let (body, unauthenticated) = state.read_unauthenticated_body(headers, body).await?;
    let encrypt = encrypt_text(&whole_body_decoded(&body)).map_err(|e| {
        let problem = loggable(&e.to_string());
        tracing::warn!(account = %account.name, %problem, "encrypted callback refused: unusable XML");
        IngestError::MalformedXml(problem)
    })?;
    let opened = crypto.open(&signature, &timestamp, &nonce, &encrypt);
    drop(unauthenticated);
    match opened {
        Ok(plaintext) => {
            let _slot = state.authenticated_slot()?;
            state.intake.accept(account, plaintext.as_bytes(), Source::Push).await?;
            Ok(ack())
        }
        Err(CryptoError::BadSignature) => {
            tracing::warn!(account = %account.name, "encrypted callback refused: wrong signature");
            Err(IngestError::Crypto(CryptoError::BadSignature))
        }
        // Signed with the account's token, so it is the platform's: keep it for a key fix.
        Err(problem) => {
            let _slot = state.authenticated_slot()?;
            state.intake.keep_rejected(account, &body, Source::Push, &problem.to_string()).await?;
            Err(IngestError::Crypto(problem))
        }
    }
}

type Signed<'a> = (Cow<'a, str>, Cow<'a, str>, Cow<'a, str>);

/// `msg_signature` (its absence is an authentication failure), `timestamp` and `nonce`.
fn signed_params(query: Option<&str>) -> Result<Signed<'_>, IngestError> {
    let signature = query::param(query, "msg_signature").ok_or(IngestError::InvalidSignature)?;
    let timestamp = query::param(query, "timestamp").ok_or(IngestError::MissingParameter("timestamp"))?;
    let nonce = query::param(query, "nonce").ok_or(IngestError::MissingParameter("nonce"))?;
    Ok((signature, timestamp, nonce))
}

fn crypto_of(account: &Account) -> Result<&CallbackCrypto, IngestError> {
    account.crypto.as_ref().ok_or_else(|| {
        tracing::warn!(account = %account.name, "encrypted callback refused: the account has no token configured");
        IngestError::InvalidSignature
    })
}

/// Some senders percent-encode the whole XML body; an XML document never starts with `%`.
fn whole_body_decoded(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if body.trim_ascii_start().starts_with(b"%3C") || body.trim_ascii_start().starts_with(b"%3c") {
        percent_decode(body).into()
    } else {
        body.into()
    }
}

#[cfg(test)]
mod tests {
    use super::is_live;

    #[test]
    fn a_url_check_is_live_in_seconds_or_milliseconds_within_the_window() {
        let now = 1_700_000_000;
        assert!(is_live("1700000000", now));
        assert!(is_live("1700000299999", now), "milliseconds");
        assert!(is_live("1699999700", now));
        assert!(!is_live("1699999699", now));
        assert!(!is_live("1678759048896", now), "a captured timestamp from long ago");
        assert!(!is_live("soon", now));
    }
}
