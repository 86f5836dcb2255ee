//! `[[accounts]]`: parsed into `Account`s, with their mode made unambiguous (plain needs a key,
//! encrypted needs a token and a valid AES key, a plain key on an encrypted account needs
//! `allow_plain`).

use std::collections::HashMap;
use std::time::Duration;

use chrono::FixedOffset;

use super::raw::{RawAccount, RawApi};
use super::{is_url_safe_name, positive_seconds, Context, Problems};
use crate::account::Account;
use crate::platform::client::ApiSettings;
use crate::platform::crypto::{CallbackCrypto, KeyError};

/// A callback key travels in the URL; shorter ones can be guessed.
const MIN_CALLBACK_KEY_CHARS: usize = 16;

pub(super) fn parse(raw: Vec<RawAccount>, context: &Context<'_>, problems: &mut Problems) -> Vec<Account> {
    let mut seen = HashMap::new();
    let mut accounts = Vec::with_capacity(raw.len());
    for (index, raw) in raw.into_iter().enumerate() {
        let key = format!("accounts[{index}]");
        if !is_url_safe_name(&raw.name) {
            problems.add(
                format!("{key}.name"),
                format!("`{}` must be 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'", raw.name),
            );
        }
        if let Some(first) = seen.insert(raw.name.clone(), index) {
            problems.add(format!("{key}.name"), format!("`{}` is already used by accounts[{first}]", raw.name));
        }
        if let Some(account) = parse_one(raw, &key, context, problems) {
            accounts.push(account);
        }
    }
    accounts
}

fn parse_one(raw: RawAccount, key: &str, context: &Context<'_>, problems: &mut Problems) -> Option<Account> {
    let before = problems.0.len();
    let keys_given: Vec<(String, &super::secrets::RawSecret)> = raw
        .callback_key
        .iter()
        .map(|k| (format!("{key}.callback_key"), k))
        .chain(raw.callback_keys.iter().enumerate().map(|(i, k)| (format!("{key}.callback_keys[{i}]"), k)))
        .collect();
    let callback_keys: Vec<_> =
        keys_given.iter().filter_map(|(name, k)| context.secret(problems, name, k, MIN_CALLBACK_KEY_CHARS)).collect();
    let has_keys = !keys_given.is_empty();
    let crypto = match (&raw.token, &raw.encoding_aes_key) {
        (None, None) => {
            if !has_keys {
                problems.add(
                    format!("{key}.callback_key"),
                    "required (or set token and encoding_aes_key for encrypted mode)",
                );
            }
            if raw.allow_plain {
                problems.add(format!("{key}.allow_plain"), "only means something in encrypted mode");
            }
            None
        }
        (Some(_), None) => {
            problems.add(format!("{key}.encoding_aes_key"), "required when token is set");
            None
        }
        (None, Some(_)) => {
            problems.add(format!("{key}.token"), "required when encoding_aes_key is set");
            None
        }
        (Some(token), Some(aes_key)) => {
            if raw.allow_plain && !has_keys {
                problems.add(format!("{key}.callback_key"), "required when allow_plain is true");
            }
            if !raw.allow_plain && has_keys {
                problems.add(
                    format!("{key}.callback_key"),
                    "set, but an encrypted account refuses plain callbacks unless allow_plain = true",
                );
            }
            let token = context.secret(problems, &format!("{key}.token"), token, 1);
            let aes_key = context.secret(problems, &format!("{key}.encoding_aes_key"), aes_key, 1);
            match (token, aes_key) {
                (Some(token), Some(aes_key)) => {
                    match CallbackCrypto::new(token.expose(), aes_key.expose(), &raw.receive_id) {
                        Ok(crypto) => Some(crypto),
                        Err(e) => {
                            let field = if e == KeyError::EmptyToken { "token" } else { "encoding_aes_key" };
                            problems.add(format!("{key}.{field}"), e);
                            None
                        }
                    }
                }
                _ => None,
            }
        }
    };
    let utc_offset = parse_utc_offset(&raw.utc_offset);
    if utc_offset.is_none() {
        problems.add(format!("{key}.utc_offset"), format!("`{}` is not an offset like +08:00", raw.utc_offset));
    }
    let api = raw.api.as_ref().and_then(|api| parse_api(api, &format!("{key}.api"), context, problems));
    if raw.api.is_none()
        && (raw.reconcile_on_job_completed == Some(true) || raw.enrich_calls || raw.reconcile_interval_secs.is_some())
    {
        problems.add(key, "reconcile_on_job_completed, enrich_calls and reconcile_interval_secs need [accounts.api]");
    }
    let reconcile_interval: Option<Duration> = match raw.reconcile_interval_secs {
        None => None,
        Some(seconds) => {
            let interval = positive_seconds(seconds);
            if interval.is_none() {
                problems.add(format!("{key}.reconcile_interval_secs"), "must be a positive number of seconds");
            }
            interval
        }
    };
    if problems.0.len() > before {
        return None;
    }
    Some(Account {
        name: raw.name,
        // Plain callbacks need a key, and an encrypted account takes them only with allow_plain.
        callback_keys: if crypto.is_none() || raw.allow_plain { callback_keys } else { Vec::new() },
        crypto,
        utc_offset: utc_offset?,
        reconcile_on_job_completed: api.is_some() && raw.reconcile_on_job_completed.unwrap_or(true),
        enrich_calls: api.is_some() && raw.enrich_calls,
        reconcile_interval: reconcile_interval.filter(|_| api.is_some()),
        api,
    })
}

fn parse_api(raw: &RawApi, key: &str, context: &Context<'_>, problems: &mut Problems) -> Option<ApiSettings> {
    let base_url = raw.base_url.trim_end_matches('/');
    let url_ok = match reqwest::Url::parse(base_url) {
        Ok(url) if url.scheme() == "https" => true,
        // Plain HTTP carries the signed requests in the clear: only to this machine (a mock).
        Ok(url) if url.scheme() == "http" && is_loopback(&url) => true,
        _ => {
            problems.add(
                format!("{key}.base_url"),
                format!("`{}` must be an https URL (http only on loopback)", raw.base_url),
            );
            false
        }
    };
    let app_key = context.secret(problems, &format!("{key}.app_key"), &raw.app_key, 1);
    let app_secret = context.secret(problems, &format!("{key}.app_secret"), &raw.app_secret, 1);
    let tenant_sign = context.secret(problems, &format!("{key}.tenant_sign"), &raw.tenant_sign, 0);
    let rate = match raw.max_requests_per_second {
        Some(rate) if !(rate.is_finite() && rate > 0.0) => {
            problems.add(format!("{key}.max_requests_per_second"), "must be a positive number");
            None
        }
        rate => rate,
    };
    if raw.timeout_ms == 0 {
        problems.add(format!("{key}.timeout_ms"), "must be greater than 0");
    }
    Some(ApiSettings {
        base_url: url_ok.then(|| base_url.to_owned())?,
        app_key: app_key?,
        app_secret: app_secret?,
        tenant_sign: tenant_sign?,
        version: raw.version.clone(),
        timeout: Duration::from_millis(raw.timeout_ms),
        min_interval: rate.map(|r| Duration::from_secs_f64(1.0 / r)),
    })
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn parse_utc_offset(text: &str) -> Option<FixedOffset> {
    if text == "Z" {
        return FixedOffset::east_opt(0);
    }
    text.parse().ok()
}
