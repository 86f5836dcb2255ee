//! The signed client for the platform's REST API. Every request carries a fresh signature (the
//! secret itself never travels); the `code` of the response envelope, not only the HTTP status,
//! says whether it worked. Reads are retried on network errors and 5xx; the per-account request
//! rate is respected.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::signing::rest_signature;
use crate::secret::Secret;

/// One account's credentials and limits for the REST API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Without a trailing `/`.
    pub base_url: String,
    pub app_key: Secret,
    pub app_secret: Secret,
    pub tenant_sign: Secret,
    pub version: String,
    /// Per request.
    pub timeout: Duration,
    /// Time between two requests, when a rate is set.
    pub min_interval: Option<Duration>,
}

/// Largest page the platform serves.
pub const MAX_PAGE_SIZE: u32 = 100;
const READ_TRIES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the platform refused the signature or credentials (code 401): {0}")]
    Unauthorized(String),
    #[error("no permission (code 403): {0}")]
    Forbidden(String),
    #[error("not found (code 404): {0}")]
    NotFound(String),
    #[error("bad parameters (code 412): {0}")]
    BadParameters(String),
    #[error("the platform failed (code 500): {0}")]
    Server(String),
    #[error("unexpected answer code {code}: {message}")]
    Unexpected { code: i64, message: String },
    #[error("HTTP {0} from the platform")]
    Http(u16),
    #[error("cannot reach the platform: {0}")]
    Network(String),
    #[error("the platform's answer is not what was expected: {0}")]
    Decode(String),
}

impl ApiError {
    /// Worth trying again later (the platform or the network, not our request).
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Server(_) | ApiError::Network(_)) || matches!(self, ApiError::Http(s) if *s >= 500)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    code: i64,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    result_msg: Option<String>,
}

/// One page of a paged answer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub number: u32,
    pub page_size: u32,
    pub total_elements: u64,
    pub pages: u32,
    pub content: Vec<T>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub tenant_id: i64,
    pub tenant_name: Option<String>,
}

pub struct PlatformClient {
    http: reqwest::Client,
    base_url: String,
    app_key: Secret,
    app_secret: Secret,
    tenant_sign: Secret,
    version: String,
    timeout: Duration,
    min_interval: Option<Duration>,
    next_request: Mutex<Instant>,
}

impl PlatformClient {
    pub fn new(settings: &ApiSettings) -> PlatformClient {
        let http = reqwest::Client::builder()
            // A redirect would carry the signature headers somewhere the account did not name.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds with static settings");
        PlatformClient {
            http,
            base_url: settings.base_url.clone(),
            app_key: settings.app_key.clone(),
            app_secret: settings.app_secret.clone(),
            tenant_sign: settings.tenant_sign.clone(),
            version: settings.version.clone(),
            timeout: settings.timeout,
            min_interval: settings.min_interval,
            next_request: Mutex::new(Instant::now()),
        }
    }

    pub async fn get_tenant(&self) -> Result<Tenant, ApiError> {
        self.read("GET", "tenant/getTenant", &[], None).await
    }

    pub async fn get_phone_list(&self) -> Result<Value, ApiError> {
        self.read("GET", "phone/getPhoneList", &[], None).await
    }

    pub async fn get_dialog_flow_list(&self) -> Result<Value, ApiError> {
        self.read("GET", "dialogFlow/getDialogFlowList", &[], None).await
    }

    pub async fn get_used_intent_level_tag_list(&self) -> Result<Value, ApiError> {
        self.read("GET", "intentLevelTag/getUsedIntentLevelTagList", &[], None).await
    }

    pub async fn get_intent_level_tag(&self, intent_level_tag_id: i64) -> Result<Value, ApiError> {
        self.read(
            "GET",
            "intentLevelTag/getIntentLevelTag",
            &[("intentLevelTagId", intent_level_tag_id.to_string())],
            None,
        )
        .await
    }

    pub async fn get_jobs(&self, status: Option<&str>, page: u32, page_size: u32) -> Result<Page<Value>, ApiError> {
        let mut query = vec![("pageNum", page.to_string()), ("pageSize", page_size.min(MAX_PAGE_SIZE).to_string())];
        if let Some(status) = status {
            query.push(("status", status.to_owned()));
        }
        self.read("GET", "job/getJobs", &query, None).await
    }

    pub async fn get_job_detail(&self, robot_call_job_id: i64) -> Result<Value, ApiError> {
        self.read("GET", "job/getJobDetail", &[("robotCallJobId", robot_call_job_id.to_string())], None).await
    }

    pub async fn get_job_stats(&self, robot_call_job_id: i64) -> Result<Value, ApiError> {
        self.read("GET", "job/getJobStats", &[("robotCallJobId", robot_call_job_id.to_string())], None).await
    }

    pub async fn get_job_stats_info_list(&self, robot_call_job_ids: &[i64]) -> Result<Value, ApiError> {
        let ids: Vec<String> = robot_call_job_ids.iter().map(i64::to_string).collect();
        self.read("POST", "job/getJobStatsInfoList", &[], Some(json!(ids))).await
    }

    /// One page of a job's finished calls (raw records: fed to the same parser as callbacks).
    pub async fn get_call_record_page(
        &self,
        robot_call_job_id: i64,
        page: u32,
        page_size: u32,
    ) -> Result<Page<Value>, ApiError> {
        let body =
            json!({ "robotCallJobId": robot_call_job_id, "pageNum": page, "pageSize": page_size.min(MAX_PAGE_SIZE) });
        self.read("POST", "callRecord/getCallRecordInfoList", &[], Some(body)).await
    }

    /// Every finished call of a job, as a cursor over pages of 100.
    pub fn call_record_pages(&self, robot_call_job_id: i64) -> CallRecordPages<'_> {
        CallRecordPages { client: self, robot_call_job_id, next_page: Some(1) }
    }

    pub async fn call_detail(&self, call_record_id: i64) -> Result<Value, ApiError> {
        self.read("GET", "callRecord/callDetail", &[("callRecordId", call_record_id.to_string())], None).await
    }

    /// Registers the callback URLs of this account (not retried: it changes state).
    pub async fn update_isv_info(&self, callback_url: &str, sms_callback_url: Option<&str>) -> Result<Value, ApiError> {
        let body = json!({
            "tenantSign": self.tenant_sign.expose(),
            "callbackUrl": callback_url,
            "smsCallbackUrl": sms_callback_url.unwrap_or(callback_url),
        });
        self.call("POST", "isv/updateIsvInfo", &[], Some(&body)).await
    }

    /// A read: retried on network errors and 5xx, with backoff.
    async fn read<T: DeserializeOwned>(
        &self,
        method: &str,
        resource: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<T, ApiError> {
        let mut delay = Duration::from_millis(200);
        let mut tries = 0;
        loop {
            tries += 1;
            match self.call(method, resource, query, body.as_ref()).await {
                Err(e) if e.is_transient() && tries < READ_TRIES => {
                    tracing::debug!(resource, error = %e, "platform read failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
    }

    /// One signed request. Adding an endpoint is one function calling this.
    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        resource: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T, ApiError> {
        self.wait_for_rate().await;
        let url = format!("{}/apiOpen/{}/{resource}", self.base_url, self.version);
        let timestamp = Utc::now().timestamp_millis().to_string();
        let signature = rest_signature(
            self.app_key.expose(),
            self.app_secret.expose(),
            self.tenant_sign.expose(),
            &self.version,
            &timestamp,
        );
        let mut request = match method {
            "POST" => self.http.post(&url),
            _ => self.http.get(&url),
        }
        .timeout(self.timeout)
        .query(query)
        // Only what the vendor's client sends: the tenant sign is inside the signature, never a
        // header of its own.
        .header("appKey", self.app_key.expose())
        .header("version", &self.version)
        .header("timestamp", &timestamp)
        .header("signature", signature)
        .header("Accept", "application/json;charset=utf-8");
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json;charset=utf-8")
                .body(serde_json::to_vec(body).unwrap_or_default());
        }
        let network = |e: reqwest::Error| ApiError::Network(describe_http_error(&e.without_url()));
        let response = request.send().await.map_err(network)?;
        let status = response.status();
        let text = response.text().await.map_err(network)?;
        let envelope: Envelope = match serde_json::from_str(&text) {
            Ok(envelope) => envelope,
            Err(_) if !status.is_success() => return Err(ApiError::Http(status.as_u16())),
            Err(e) => return Err(ApiError::Decode(e.to_string())),
        };
        let message = envelope.result_msg.unwrap_or_default();
        match envelope.code {
            200 => serde_json::from_value(envelope.data).map_err(|e| ApiError::Decode(format!("{resource}: {e}"))),
            401 => Err(ApiError::Unauthorized(message)),
            403 => Err(ApiError::Forbidden(message)),
            404 => Err(ApiError::NotFound(message)),
            412 => Err(ApiError::BadParameters(message)),
            500 => Err(ApiError::Server(message)),
            code => Err(ApiError::Unexpected { code, message }),
        }
    }

    async fn wait_for_rate(&self) {
        let Some(interval) = self.min_interval else { return };
        let wait = {
            let mut next = self.next_request.lock().await;
            let start = (*next).max(Instant::now());
            *next = start + interval;
            start.saturating_duration_since(Instant::now())
        };
        tokio::time::sleep(wait).await;
    }
}

/// Pages through a job's finished calls: `while let Some(records) = pages.next().await? { … }`.
pub struct CallRecordPages<'a> {
    client: &'a PlatformClient,
    robot_call_job_id: i64,
    next_page: Option<u32>,
}

impl CallRecordPages<'_> {
    pub async fn next(&mut self) -> Result<Option<Vec<Value>>, ApiError> {
        let Some(page) = self.next_page else { return Ok(None) };
        let current = self.client.get_call_record_page(self.robot_call_job_id, page, MAX_PAGE_SIZE).await?;
        self.next_page = (!current.content.is_empty() && page < current.pages).then_some(page + 1);
        Ok((!current.content.is_empty()).then_some(current.content))
    }
}

/// A short, URL-free description of a failed HTTP request, with its causes (reqwest's own message
/// is only "error sending request").
pub fn describe_http_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = format!("{kind}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text.chars().take(300).collect()
}
