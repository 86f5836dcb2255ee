//! The encrypted mode: the GET URL check and encrypted POSTs. Only the signature in the URL counts
//! (the copies inside the XML are ignored, as the vendor ignores them).

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use percent_encoding::percent_decode;

use super::{ack, find_account, query, read_body, text, IngestError, IngestState};
use crate::account::Account;
use crate::domain::Source;
use crate::platform::crypto::{CallbackCrypto, CryptoError};
use crate::platform::xml::encrypt_text;

/// `GET /callbacks/{account}?msg_signature=&timestamp=&nonce=&echostr=`: the platform checks the
/// URL by asking us to decrypt `echostr`. Nothing is stored.
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
    let echo = crypto.open(&signature, &timestamp, &nonce, &echostr).map_err(|e| {
        tracing::warn!(account = %account.name, problem = %e, "URL check refused");
        IngestError::Crypto(e)
    })?;
    tracing::info!(account = %account.name, "URL check answered");
    Ok(text(echo))
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
    let body = read_body(headers, body, state.body_limit, state.body_timeout).await?;
    // Until the signature is checked nothing in the body is trusted, so nothing is stored.
    let encrypt = encrypt_text(&whole_body_decoded(&body)).map_err(|e| {
        tracing::warn!(account = %account.name, problem = %e, "encrypted callback refused: unusable XML");
        IngestError::MalformedXml(e.to_string())
    })?;
    match crypto.open(&signature, &timestamp, &nonce, &encrypt) {
        Ok(plaintext) => {
            state.intake.accept(account, plaintext.as_bytes(), Source::Push).await?;
            Ok(ack())
        }
        Err(CryptoError::BadSignature) => {
            tracing::warn!(account = %account.name, "encrypted callback refused: wrong signature");
            Err(IngestError::Crypto(CryptoError::BadSignature))
        }
        // Signed with the account's token, so it is the platform's: keep it for a key fix.
        Err(problem) => {
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
