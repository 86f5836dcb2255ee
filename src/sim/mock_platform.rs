//! A mock of the platform's REST API: generated, consistent data (the same seed always gives the
//! same jobs and calls), every signature checked as the platform checks it, paging as the platform
//! pages. The call records it serves are exactly the `data` of the callbacks it would push.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::rng::Rng;
use super::traffic;
pub use super::traffic::call_record_id;
use crate::platform::signing::rest_signature;

#[derive(Debug, Clone)]
pub struct MockConfig {
    pub seed: u64,
    pub app_key: String,
    pub app_secret: String,
    pub tenant_sign: String,
    /// (robotCallJobId, number of finished calls)
    pub jobs: Vec<(i64, u32)>,
    /// Added to every call-list page: makes a long reconciliation for tests of interruptions.
    pub page_delay: std::time::Duration,
    /// Jobs still calling (status IN_PROCESS); the others are COMPLETED.
    pub running_jobs: Vec<i64>,
}

impl MockConfig {
    pub fn new(seed: u64, jobs: Vec<(i64, u32)>) -> MockConfig {
        MockConfig {
            seed,
            app_key: "mockAppKey000001".into(),
            app_secret: "mockAppSecret0000000000000000001".into(),
            tenant_sign: "mock-tenant".into(),
            jobs,
            page_delay: std::time::Duration::ZERO,
            running_jobs: Vec::new(),
        }
    }
}

#[derive(Clone)]
pub struct MockPlatform {
    config: Arc<MockConfig>,
    /// The callback URLs registered through `isv/updateIsvInfo`.
    registered: Arc<Mutex<Option<Value>>>,
    /// How many signed requests were served (tests check rate and paging).
    requests: Arc<Mutex<u64>>,
    /// The header names of the last request (tests check what a client sends).
    last_headers: Arc<Mutex<Vec<String>>>,
    /// Intent levels corrected by a person, by call record id.
    corrections: Arc<Mutex<std::collections::HashMap<i64, String>>>,
}

impl MockPlatform {
    pub fn new(config: MockConfig) -> MockPlatform {
        MockPlatform {
            config: Arc::new(config),
            registered: Arc::default(),
            requests: Arc::default(),
            last_headers: Arc::default(),
            corrections: Arc::default(),
        }
    }

    pub fn config(&self) -> &MockConfig {
        &self.config
    }

    pub fn requests_served(&self) -> u64 {
        *self.requests.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The header names of the last request served, lowercase and sorted.
    pub fn last_request_headers(&self) -> Vec<String> {
        self.last_headers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A person corrects a call's intent level on the platform (shows in `callDetail`).
    pub fn correct_intent(&self, call_record_id: i64, level: &str) {
        self.corrections.lock().unwrap_or_else(|p| p.into_inner()).insert(call_record_id, level.to_owned());
    }

    pub fn registered_callback(&self) -> Option<Value> {
        self.registered.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Binds and serves in the background; returns the base URL.
    pub async fn start(self, listen: &str) -> std::io::Result<String> {
        let listener = TcpListener::bind(listen).await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, self.router()).await });
        Ok(base)
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/apiOpen/{version}/tenant/getTenant", get(tenant))
            .route("/apiOpen/{version}/phone/getPhoneList", get(phones))
            .route("/apiOpen/{version}/dialogFlow/getDialogFlowList", get(dialog_flows))
            .route("/apiOpen/{version}/intentLevelTag/getUsedIntentLevelTagList", get(intent_tags))
            .route("/apiOpen/{version}/intentLevelTag/getIntentLevelTag", get(intent_tag))
            .route("/apiOpen/{version}/job/getJobs", get(jobs))
            .route("/apiOpen/{version}/job/getJobDetail", get(job_detail))
            .route("/apiOpen/{version}/job/getJobStats", get(job_stats))
            .route("/apiOpen/{version}/job/getJobStatsInfoList", post(job_stats_info_list))
            .route("/apiOpen/{version}/callRecord/getCallRecordInfoList", post(call_records))
            .route("/apiOpen/{version}/callRecord/callDetail", get(call_detail))
            .route("/apiOpen/{version}/isv/updateIsvInfo", post(update_isv_info))
            .with_state(self)
    }

    /// The `data` of call `index` (from 0) of a job: what the push and the API both carry.
    pub fn call_record(&self, robot_call_job_id: i64, index: u32) -> Value {
        traffic::call_record(self.config.seed, robot_call_job_id, index)
    }

    /// Pushes every job's calls and then its completion to a relay's callback URL, as the platform
    /// does, except that `lose_percent` of the calls are "lost" (never sent): what reconciliation
    /// must recover. Which calls are lost depends only on the seed.
    pub async fn push_callbacks(&self, callback_url: &str, lose_percent: u64) -> Result<PushReport, reqwest::Error> {
        let client = reqwest::Client::new();
        let mut report = PushReport::default();
        for (job, calls) in &self.config.jobs {
            for index in 0..*calls {
                let mut rng = Rng::new(self.config.seed ^ 0x5eed ^ (call_record_id(*job, index) as u64));
                if rng.below(100) < lose_percent {
                    report.lost += 1;
                    continue;
                }
                let body = json!({"dataType": "ROBOT_CALL_RECORD", "data": self.call_record(*job, index)});
                report.record(client.post(callback_url).body(body.to_string()).send().await?).await;
            }
            let completed = json!({"dataType": "ROBOT_CALL_JOB", "data": {"robotCallJobId": job, "tenantId": 1, "status": "COMPLETED"}});
            report.record(client.post(callback_url).body(completed.to_string()).send().await?).await;
        }
        Ok(report)
    }

    fn calls_of(&self, robot_call_job_id: i64) -> Option<u32> {
        self.config.jobs.iter().find(|(id, _)| *id == robot_call_job_id).map(|(_, n)| *n)
    }

    fn find_call(&self, call_record_id: i64) -> Option<Value> {
        let (job, index) = traffic::job_and_index(call_record_id);
        let calls = self.calls_of(job)?;
        (index < i64::from(calls)).then(|| self.call_record(job, index as u32))
    }

    /// The platform's check: the signature over the configured credentials and the sent
    /// timestamp and version. `None` when it holds.
    fn refuse(&self, headers: &HeaderMap) -> Option<Json<Value>> {
        *self.requests.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        let mut names: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        *self.last_headers.lock().unwrap_or_else(|p| p.into_inner()) = names;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let expected = rest_signature(
            &self.config.app_key,
            &self.config.app_secret,
            &self.config.tenant_sign,
            header("version"),
            header("timestamp"),
        );
        let valid = header("appKey") == self.config.app_key && header("signature") == expected;
        (!valid).then(|| envelope(401, Value::Null, "校验数据错误"))
    }
}

/// What a push of callbacks did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PushReport {
    /// Answered `200 success`.
    pub acked: u64,
    /// Answered anything else.
    pub refused: u64,
    /// Calls deliberately never sent.
    pub lost: u64,
}

impl PushReport {
    async fn record(&mut self, response: reqwest::Response) {
        let ok = response.status().is_success();
        if ok && response.text().await.is_ok_and(|body| body == "success") {
            self.acked += 1;
        } else {
            self.refused += 1;
        }
    }
}

fn envelope(code: i64, data: Value, message: &str) -> Json<Value> {
    Json(json!({"code": code, "data": data, "requestId": "MOCKREQ1", "resultMsg": message, "errorStackTrace": null}))
}

fn ok(data: Value) -> Json<Value> {
    envelope(200, data, "执行成功")
}

fn page(items: Vec<Value>, page_num: Option<u64>, page_size: Option<u64>) -> Result<Json<Value>, Json<Value>> {
    let size = page_size.unwrap_or(20);
    let number = page_num.unwrap_or(1);
    if !(1..=100).contains(&size) || number == 0 {
        return Err(envelope(412, Value::Null, "分页参数错误"));
    }
    let total = items.len() as u64;
    let content: Vec<Value> = items.into_iter().skip(((number - 1) * size) as usize).take(size as usize).collect();
    Ok(ok(
        json!({"number": number, "pageSize": size, "totalElements": total, "pages": total.div_ceil(size), "content": content}),
    ))
}

type Answer = Result<Json<Value>, Json<Value>>;
type Params = Query<std::collections::HashMap<String, String>>;

fn param(params: &Params, name: &str) -> Option<i64> {
    params.get(name).and_then(|v| v.parse().ok())
}

async fn tenant(State(mock): State<MockPlatform>, headers: HeaderMap) -> Answer {
    mock.refuse(&headers).map_or(Ok(ok(json!({"tenantId": 1, "tenantName": "模拟公司"}))), Err)
}

async fn phones(State(mock): State<MockPlatform>, headers: HeaderMap) -> Answer {
    let lines = json!([{"tenantPhoneNumberId": 675, "phoneNumber": "057100000001", "phoneName": "主线", "phoneType": "LANDLINE"}]);
    mock.refuse(&headers).map_or(Ok(ok(lines)), Err)
}

async fn dialog_flows(State(mock): State<MockPlatform>, headers: HeaderMap) -> Answer {
    let flows = json!([{"dialogFlowId": 12, "name": "楼盘推介", "industry": "房产", "subIndustry": "新房", "intentLevelTagId": 0, "status": "PUBLISHED", "createTime": "2024-01-01 10:00:00"}]);
    mock.refuse(&headers).map_or(Ok(ok(flows)), Err)
}

fn builtin_tag() -> Value {
    let names = ["较强", "一般", "待定", "较弱", "需再次跟进", "无需跟进"];
    let details: Vec<Value> =
        names.iter().enumerate().map(|(code, name)| json!({"code": code, "name": name})).collect();
    json!({"intentLevelTagId": 0, "name": "默认意向标签", "details": details})
}

async fn intent_tags(State(mock): State<MockPlatform>, headers: HeaderMap) -> Answer {
    mock.refuse(&headers).map_or(Ok(ok(json!([builtin_tag()]))), Err)
}

async fn intent_tag(State(mock): State<MockPlatform>, headers: HeaderMap, params: Params) -> Answer {
    if let Some(refused) = mock.refuse(&headers) {
        return Err(refused);
    }
    match param(&params, "intentLevelTagId") {
        Some(0) => Ok(ok(builtin_tag())),
        _ => Err(envelope(404, Value::Null, "标签不存在")),
    }
}

fn job_summary(mock: &MockPlatform, job: i64, calls: u32) -> Value {
    let status = if mock.config.running_jobs.contains(&job) { "IN_PROCESS" } else { "COMPLETED" };
    json!({"robotCallJobId": job, "name": format!("模拟任务{job}"), "status": status, "mode": "MANUAL",
           "completedTask": calls, "taskCallTotal": calls, "createTime": "2024-03-01 08:00:00"})
}

async fn jobs(State(mock): State<MockPlatform>, headers: HeaderMap, params: Params) -> Answer {
    if let Some(refused) = mock.refuse(&headers) {
        return Err(refused);
    }
    let status = params.get("status");
    let all: Vec<Value> = mock
        .config
        .jobs
        .iter()
        .map(|(job, calls)| job_summary(&mock, *job, *calls))
        .filter(|j| status.is_none_or(|s| j["status"] == s.as_str()))
        .collect();
    page(all, param(&params, "pageNum").map(|n| n as u64), param(&params, "pageSize").map(|n| n as u64))
}

async fn job_detail(State(mock): State<MockPlatform>, headers: HeaderMap, params: Params) -> Answer {
    if let Some(refused) = mock.refuse(&headers) {
        return Err(refused);
    }
    let job = param(&params, "robotCallJobId").ok_or_else(|| envelope(412, Value::Null, "缺少robotCallJobId"))?;
    let calls = mock.calls_of(job).ok_or_else(|| envelope(404, Value::Null, "任务不存在"))?;
    Ok(ok(
        json!({"robotCallJob": job_summary(&mock, job, calls), "jobPhoneNumberList": [], "completedTask": calls, "taskCallTotal": calls}),
    ))
}

fn stats(mock: &MockPlatform, job: i64, calls: u32) -> Value {
    let mut intent = serde_json::Map::new();
    let mut results = serde_json::Map::new();
    for index in 0..calls {
        let record = mock.call_record(job, index);
        for (map, field) in [(&mut intent, "intentLevel"), (&mut results, "resultStatus")] {
            let key = record[field].as_str().unwrap_or_default().to_owned();
            let count = map.get(&key).and_then(Value::as_u64).unwrap_or(0);
            map.insert(key, json!(count + 1));
        }
    }
    let answered = results.get("ANSWERED").and_then(Value::as_u64).unwrap_or(0);
    let rate = if calls == 0 { 0.0 } else { answered as f64 / f64::from(calls) };
    json!({"answeredRate": rate, "intentLevel": intent, "dialResult": results})
}

async fn job_stats(State(mock): State<MockPlatform>, headers: HeaderMap, params: Params) -> Answer {
    if let Some(refused) = mock.refuse(&headers) {
        return Err(refused);
    }
    let job = param(&params, "robotCallJobId").ok_or_else(|| envelope(412, Value::Null, "缺少robotCallJobId"))?;
    let calls = mock.calls_of(job).ok_or_else(|| envelope(404, Value::Null, "任务不存在"))?;
    Ok(ok(stats(&mock, job, calls)))
}

async fn job_stats_info_list(
    State(mock): State<MockPlatform>,
    headers: HeaderMap,
    Json(ids): Json<Vec<String>>,
) -> Answer {
    if let Some(refused) = mock.refuse(&headers) {
        return Err(refused);
    }
    let mut out = serde_json::Map::new();
    for id in ids {
        if let Some(calls) = id.parse().ok().and_then(|job| mock.calls_of(job)) {
            out.insert(id, json!({"taskTotal": calls, "taskCompleted": calls}));
        }
    }
    Ok(ok(Value::Object(out)))
}

async fn call_records(State(mock): State<MockPlatform>, headers: HeaderMap, Json(body): Json<Value>) -> Answer {
    if let Some(refused) = mock.refuse(&headers) {
        return Err(refused);
    }
    let job = body["robotCallJobId"].as_i64().ok_or_else(|| envelope(412, Value::Null, "robotCallJobId必填"))?;
    tokio::time::sleep(mock.config.page_delay).await;
    let calls = mock.calls_of(job).unwrap_or(0);
    let records: Vec<Value> = (0..calls)
        .map(|index| {
            let mut record = mock.call_record(job, index);
            // The list adds fields the push does not carry.
            record["intentLevelName"] = json!("一般");
            record["robotCallTaskId"] = json!(index);
            record
        })
        .collect();
    page(records, body["pageNum"].as_u64(), body["pageSize"].as_u64())
}

async fn call_detail(State(mock): State<MockPlatform>, headers: HeaderMap, params: Params) -> Answer {
    if let Some(refused) = mock.refuse(&headers) {
        return Err(refused);
    }
    let id = param(&params, "callRecordId").ok_or_else(|| envelope(412, Value::Null, "缺少callRecordId"))?;
    let mut record = mock.find_call(id).ok_or_else(|| envelope(404, Value::Null, "通话记录不存在"))?;
    record["intentLevelName"] = json!("一般");
    let corrected = mock.corrections.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned();
    record["realIntentLevelName"] = json!(if corrected.is_some() { "较强" } else { "一般" });
    record["realIntentLevel"] = corrected.map_or(Value::Null, Value::String);
    record["intentLevelTagId"] = json!(0);
    record["customerPerson"] =
        json!({"customerPersonId": id, "name": "客户", "phoneNumber": record["calledPhoneNumber"]});
    Ok(ok(record))
}

async fn update_isv_info(
    State(mock): State<MockPlatform>,
    headers: HeaderMap,
    Path(_version): Path<String>,
    Json(body): Json<Value>,
) -> Answer {
    if let Some(refused) = mock.refuse(&headers) {
        return Err(refused);
    }
    *mock.registered.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
    Ok(ok(Value::Null))
}
