//! The operator console under `/console`: server-rendered pages (maud), in Chinese and English,
//! behind a sign-in with the admin token. Absent unless `admin.token` is set. Every page reads
//! through the same store operations as the admin API and the CLI.

mod i18n;
mod pages;
mod session;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::Markup;
use serde::Deserialize;

use crate::account::Accounts;
use crate::completeness::Completeness;
use crate::domain::DeliveryStatus;
use crate::fanout::worker::Wake;
use crate::fanout::{TargetKind, Targets};
use crate::secret::Secret;
use crate::store::{DeliveryFilter, Store, StoreError};
use i18n::{Label, Lang};
use session::{Session, Sessions};

/// Jobs shown per account on the jobs page: the latest by job id.
const JOBS_PER_PAGE: i64 = 100;
/// Calls per page of the calls list.
const CALLS_PER_PAGE: i64 = 50;

#[derive(Clone)]
pub struct ConsoleState {
    pub sessions: Arc<Sessions>,
    pub token: Secret,
    pub store: Store,
    pub accounts: Accounts,
    pub completeness: Arc<Completeness>,
    pub targets: Targets,
    pub wake: Wake,
    /// Mark cookies `Secure` (the public URL is https; behind a TLS-terminating load balancer).
    pub secure_cookies: bool,
}

/// What the console reads and acts on: the same services the admin API uses.
pub struct ConsoleServices {
    pub store: Store,
    pub accounts: Accounts,
    pub completeness: Arc<Completeness>,
    pub targets: Targets,
    pub wake: Wake,
}

impl ConsoleState {
    pub fn new(token: Secret, services: ConsoleServices, secure_cookies: bool) -> ConsoleState {
        let ConsoleServices { store, accounts, completeness, targets, wake } = services;
        let sessions = Arc::new(Sessions::new(&token));
        ConsoleState { sessions, token, store, accounts, completeness, targets, wake, secure_cookies }
    }
}

pub fn routes(state: ConsoleState) -> Router {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/jobs") }))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", axum::routing::post(logout))
        .route("/console/jobs", get(jobs_page))
        .route("/console/calls", get(calls_page))
        .route("/console/calls/{account}/{call_record_id}", get(call_page))
        .route("/console/calls/{account}/{call_record_id}/reveal", axum::routing::post(reveal_phone))
        .route("/console/deliveries", get(deliveries_page))
        .route("/console/deliveries/{target}/replay", axum::routing::post(replay_dead))
        .route("/console/static/console.css", get(stylesheet))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn lang(headers: &HeaderMap, query: &LangQuery) -> Lang {
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    Lang::choose(query.lang.as_deref(), cookie(headers, "lang"), accept)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn session(state: &ConsoleState, headers: &HeaderMap) -> Option<Session> {
    state.sessions.verify(cookie(headers, session::COOKIE)?, now_secs())
}

/// A page with the headers every console answer carries: nothing cached, no framing, only our
/// own stylesheet, and the chosen language remembered when it was picked by `?lang=`.
fn page(status: StatusCode, markup: Markup, lang: Lang, query: &LangQuery) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure_headers(headers);
    if query.lang.is_some() {
        let value = format!("lang={}; Path=/console; Max-Age=31536000; SameSite=Strict", lang.code());
        headers.append(header::SET_COOKIE, HeaderValue::from_str(&value).expect("ASCII"));
    }
    response
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
        ),
    );
}

fn to_login() -> Response {
    let mut response = Redirect::to("/console/login").into_response();
    secure_headers(response.headers_mut());
    response
}

async fn login_page(headers: HeaderMap, Query(query): Query<LangQuery>) -> Response {
    let lang = lang(&headers, &query);
    page(StatusCode::OK, pages::login(lang, None), lang, &query)
}

/// The form's fields, read from `application/x-www-form-urlencoded`.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

async fn login(State(state): State<ConsoleState>, headers: HeaderMap, body: Bytes) -> Response {
    let query = LangQuery { lang: None };
    let lang = lang(&headers, &query);
    let now = Instant::now();
    if !state.sessions.may_try(now) {
        tracing::warn!("console sign-in refused: too many failed attempts");
        return page(StatusCode::TOO_MANY_REQUESTS, pages::login(lang, Some(Label::TooManyAttempts)), lang, &query);
    }
    let given = form_field(&body, "token").unwrap_or_default();
    if !state.token.matches(given.as_bytes()) {
        state.sessions.failed(now);
        tracing::warn!("console sign-in failed: wrong token");
        return page(StatusCode::UNAUTHORIZED, pages::login(lang, Some(Label::WrongToken)), lang, &query);
    }
    tracing::info!("console sign-in");
    let secure = if state.secure_cookies || forwarded_https(&headers) { "; Secure" } else { "" };
    let value = format!(
        "{}={}; Path=/console; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        session::COOKIE,
        state.sessions.issue(now_secs()),
        session::LIFETIME.as_secs()
    );
    let mut response = Redirect::to("/console/jobs").into_response();
    response.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&value).expect("ASCII"));
    secure_headers(response.headers_mut());
    response
}

fn forwarded_https(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

async fn logout(State(state): State<ConsoleState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(session) = session(&state, &headers) else { return to_login() };
    if !state.sessions.csrf_matches(&session, &form_field(&body, "csrf").unwrap_or_default()) {
        return refuse(StatusCode::FORBIDDEN, "invalid_form_token", "the form's CSRF token is missing or wrong");
    }
    let mut response = to_login();
    let value = format!("{}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict", session::COOKIE);
    response.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&value).expect("ASCII"));
    response
}

async fn jobs_page(State(state): State<ConsoleState>, headers: HeaderMap, Query(query): Query<LangQuery>) -> Response {
    let Some(session) = session(&state, &headers) else { return to_login() };
    let lang = lang(&headers, &query);
    match account_jobs(&state).await {
        Ok(accounts) => {
            let csrf = state.sessions.csrf_token(&session);
            page(StatusCode::OK, pages::jobs(lang, &csrf, &accounts), lang, &query)
        }
        Err(e) => storage_failed(e),
    }
}

/// The configured accounts' names, in order (the accounts are kept by name, unordered).
fn account_names(state: &ConsoleState) -> Vec<String> {
    let mut names: Vec<String> = state.accounts.all().map(|a| a.name.clone()).collect();
    names.sort();
    names
}

async fn account_jobs(state: &ConsoleState) -> Result<Vec<pages::AccountJobs>, StoreError> {
    let mut all = Vec::new();
    for account in account_names(state) {
        let jobs = state.completeness.jobs(&account, JOBS_PER_PAGE).await?;
        let mut summaries = state.store.job_summaries(&account, JOBS_PER_PAGE).await?;
        let jobs = jobs
            .into_iter()
            .map(|job| {
                let at = summaries.iter().position(|s| s.robot_call_job_id == job.robot_call_job_id);
                (job, at.map(|i| summaries.swap_remove(i)))
            })
            .collect();
        all.push(pages::AccountJobs { account, jobs });
    }
    Ok(all)
}

#[derive(Debug, Deserialize)]
struct ReplayedQuery {
    target: Option<String>,
    replayed: Option<u64>,
}

fn webhooks(state: &ConsoleState) -> impl Iterator<Item = &str> {
    state.targets.all().iter().filter(|t| t.kind == TargetKind::Webhook).map(|t| t.name.as_str())
}

async fn deliveries_page(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(query): Query<LangQuery>,
    Query(replayed): Query<ReplayedQuery>,
) -> Response {
    let Some(session) = session(&state, &headers) else { return to_login() };
    let lang = lang(&headers, &query);
    match target_health(&state).await {
        Ok(targets) => {
            let csrf = state.sessions.csrf_token(&session);
            let replayed = replayed.target.as_deref().zip(replayed.replayed);
            page(StatusCode::OK, pages::deliveries(lang, &csrf, &targets, replayed), lang, &query)
        }
        Err(e) => storage_failed(e),
    }
}

async fn target_health(state: &ConsoleState) -> Result<Vec<pages::TargetHealth>, StoreError> {
    let stats = state.store.queue_stats(crate::store::storable_now()).await?;
    let mut all = Vec::new();
    for target in webhooks(state) {
        let figures = stats.iter().find(|s| s.target == target);
        let latest_dead = DeliveryFilter {
            target: Some(target.to_owned()),
            status: Some(DeliveryStatus::Dead),
            limit: Some(1),
            ..Default::default()
        };
        let last_error = state.store.deliveries(&latest_dead).await?.into_iter().next().and_then(|d| d.last_error);
        all.push(pages::TargetHealth {
            target: target.to_owned(),
            pending: figures.map_or(0, |f| f.pending),
            dead: figures.map_or(0, |f| f.dead),
            oldest_due_at: figures.and_then(|f| f.oldest_due_at),
            last_error,
        });
    }
    Ok(all)
}

/// Replays a target's dead deliveries (since a time, read as UTC like every time the console
/// shows), after the form's confirmation.
async fn replay_dead(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    axum::extract::Path(target): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let Some(session) = session(&state, &headers) else { return to_login() };
    if !state.sessions.csrf_matches(&session, &form_field(&body, "csrf").unwrap_or_default()) {
        return refuse(StatusCode::FORBIDDEN, "invalid_form_token", "the form's CSRF token is missing or wrong");
    }
    if !webhooks(&state).any(|t| t == target) {
        return refuse(StatusCode::NOT_FOUND, "not_found", "no such target");
    }
    if form_field(&body, "confirm").as_deref() != Some("yes") {
        return refuse(StatusCode::BAD_REQUEST, "not_confirmed", "confirm the replay");
    }
    let since = match form_field(&body, "since").filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => match chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M") {
            Ok(at) => Some(at.and_utc()),
            Err(_) => return refuse(StatusCode::BAD_REQUEST, "bad_request", "since: expected YYYY-MM-DDTHH:MM"),
        },
    };
    let filter = DeliveryFilter {
        target: Some(target.clone()),
        status: Some(DeliveryStatus::Dead),
        since,
        ..Default::default()
    };
    match state.store.replay(&filter, chrono::Utc::now()).await {
        Ok(replayed) => {
            state.wake.targets([&target]);
            tracing::info!(%target, replayed, "replay of dead deliveries requested from the console");
            let target_param = percent_encoding::utf8_percent_encode(&target, percent_encoding::NON_ALPHANUMERIC);
            let mut response =
                Redirect::to(&format!("/console/deliveries?target={target_param}&replayed={replayed}")).into_response();
            secure_headers(response.headers_mut());
            response
        }
        Err(e) => storage_failed(e),
    }
}

async fn calls_page(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(query): Query<LangQuery>,
    Query(form): Query<pages::CallsForm>,
) -> Response {
    let Some(session) = session(&state, &headers) else { return to_login() };
    let lang = lang(&headers, &query);
    let names = account_names(&state);
    let account = form.account.clone().filter(|a| !a.is_empty()).or_else(|| names.first().cloned()).unwrap_or_default();
    if !names.contains(&account) {
        return refuse(StatusCode::NOT_FOUND, "not_found", "no such account");
    }
    let Ok(filter) = call_filter(&form) else {
        return refuse(StatusCode::BAD_REQUEST, "bad_request", "job: a number; from, until: YYYY-MM-DD");
    };
    match state.store.calls(&account, &filter).await {
        Ok(mut rows) => {
            // One more than a page was asked for: whether there is a next page.
            let next = (rows.len() as i64 > CALLS_PER_PAGE).then(|| {
                rows.truncate(CALLS_PER_PAGE as usize);
                rows.last().map_or(0, |r| r.call_record_id)
            });
            let csrf = state.sessions.csrf_token(&session);
            page(StatusCode::OK, pages::calls(lang, &csrf, &names, &account, &form, &rows, next), lang, &query)
        }
        Err(e) => storage_failed(e),
    }
}

/// The list's filter from the form: unknown results and grades mean "any"; a bad number or date
/// is an error.
fn call_filter(form: &pages::CallsForm) -> Result<crate::store::CallFilter, ()> {
    let given = |value: &Option<String>| value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let date = |value: &Option<String>| {
        given(value)
            .map(|text| {
                chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").map(|d| d.and_time(Default::default()).and_utc())
            })
            .transpose()
            .map_err(|_| ())
    };
    Ok(crate::store::CallFilter {
        robot_call_job_id: given(&form.job).map(|j| j.parse()).transpose().map_err(|_| ())?,
        result_status: given(&form.result).filter(|r| i18n::RESULT_STATUSES.contains(&r.as_str())),
        intent_grade: given(&form.grade).filter(|g| matches!(g.as_str(), "A" | "B" | "C" | "D" | "E" | "F")),
        started_from: date(&form.from)?,
        started_before: date(&form.until)?,
        before_call_record_id: form.before,
        limit: CALLS_PER_PAGE + 1,
    })
}

async fn call_page(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(query): Query<LangQuery>,
    axum::extract::Path((account, id)): axum::extract::Path<(String, i64)>,
) -> Response {
    let Some(session) = session(&state, &headers) else { return to_login() };
    show_call(&state, &session, lang(&headers, &query), &query, &account, id, false).await
}

/// Shows the full number, once, and logs who asked (the session) and for which call; never the
/// number itself.
async fn reveal_phone(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    axum::extract::Path((account, id)): axum::extract::Path<(String, i64)>,
    body: Bytes,
) -> Response {
    let Some(session) = session(&state, &headers) else { return to_login() };
    if !state.sessions.csrf_matches(&session, &form_field(&body, "csrf").unwrap_or_default()) {
        return refuse(StatusCode::FORBIDDEN, "invalid_form_token", "the form's CSRF token is missing or wrong");
    }
    tracing::info!(account = %crate::telemetry::loggable(&account), call_record_id = id, session = %session.short_id(), "phone number revealed in the console");
    let query = LangQuery { lang: None };
    show_call(&state, &session, lang(&headers, &query), &query, &account, id, true).await
}

async fn show_call(
    state: &ConsoleState,
    session: &Session,
    lang: Lang,
    query: &LangQuery,
    account: &str,
    id: i64,
    revealed: bool,
) -> Response {
    if state.accounts.get(account).is_none() {
        return refuse(StatusCode::NOT_FOUND, "not_found", "no such account");
    }
    let found = async {
        let call = state.store.call_record(account, id).await?;
        let turns = state.store.call_turns(account, id).await?;
        Ok::<_, StoreError>(call.map(|call| (call, turns)))
    };
    match found.await {
        Ok(Some((call, turns))) => {
            let csrf = state.sessions.csrf_token(session);
            page(StatusCode::OK, pages::call(lang, &csrf, &call, &turns, revealed), lang, query)
        }
        Ok(None) => refuse(StatusCode::NOT_FOUND, "not_found", "no such call"),
        Err(e) => storage_failed(e),
    }
}

/// A refused console request: its status, a short JSON error, a log line (and no caching).
fn refuse(status: StatusCode, code: &'static str, message: &str) -> Response {
    tracing::warn!(status = status.as_u16(), code, "console request refused");
    let mut response = crate::ingest::plain_error(status, code, message);
    secure_headers(response.headers_mut());
    response
}

fn storage_failed(error: StoreError) -> Response {
    tracing::error!(error = %error, "console page failed on storage");
    refuse(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "storage unavailable; retry later")
}

async fn stylesheet() -> Response {
    let mut response = include_str!("console.css").into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}
