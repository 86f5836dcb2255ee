//! The signed REST client against the mock platform over real HTTP.

use std::collections::HashSet;

use std::time::Duration;

use tanyi_relay::platform::client::{ApiError, ApiSettings, PlatformClient};
use tanyi_relay::secret::Secret;
use tanyi_relay::sim::mock_platform::{call_record_id, MockConfig, MockPlatform};

async fn mock(jobs: Vec<(i64, u32)>) -> (MockPlatform, String) {
    let platform = MockPlatform::new(MockConfig::new(7, jobs));
    let base = platform.clone().start("127.0.0.1:0").await.expect("mock starts");
    (platform, base)
}

fn client(platform: &MockPlatform, base: &str, secret: Option<&str>) -> PlatformClient {
    client_with_rate(platform, base, secret, None)
}

fn client_with_rate(platform: &MockPlatform, base: &str, secret: Option<&str>, rate: Option<f64>) -> PlatformClient {
    let config = platform.config();
    PlatformClient::new(&ApiSettings {
        base_url: base.to_owned(),
        app_key: Secret::new(&config.app_key),
        app_secret: Secret::new(secret.unwrap_or(&config.app_secret)),
        tenant_sign: Secret::new(&config.tenant_sign),
        version: "v1".into(),
        timeout: Duration::from_secs(5),
        min_interval: rate.map(|r| Duration::from_secs_f64(1.0 / r)),
    })
}

#[tokio::test]
async fn every_typed_call_works_against_the_mock() {
    let (platform, base) = mock(vec![(43, 30), (44, 5)]).await;
    let api = client(&platform, &base, None);
    assert_eq!(api.get_tenant().await.unwrap().tenant_id, 1);
    assert!(api.get_phone_list().await.unwrap().as_array().is_some_and(|l| !l.is_empty()));
    assert_eq!(api.get_dialog_flow_list().await.unwrap()[0]["dialogFlowId"], 12);
    assert_eq!(api.get_used_intent_level_tag_list().await.unwrap()[0]["intentLevelTagId"], 0);
    assert_eq!(api.get_intent_level_tag(0).await.unwrap()["details"].as_array().unwrap().len(), 6);
    let jobs = api.get_jobs(Some("COMPLETED"), 1, 20).await.unwrap();
    assert_eq!((jobs.total_elements, jobs.content.len()), (2, 2));
    assert_eq!(api.get_job_detail(43).await.unwrap()["taskCallTotal"], 30);
    let stats = api.get_job_stats(43).await.unwrap();
    let total: u64 = stats["dialResult"].as_object().unwrap().values().filter_map(|v| v.as_u64()).sum();
    assert_eq!(total, 30);
    assert_eq!(api.get_job_stats_info_list(&[43, 44]).await.unwrap()["44"]["taskTotal"], 5);
    let page = api.get_call_record_page(43, 2, 10).await.unwrap();
    assert_eq!((page.number, page.pages, page.content.len()), (2, 3, 10));
    let detail = api.call_detail(call_record_id(43, 3)).await.unwrap();
    assert_eq!(detail["callRecordId"], call_record_id(43, 3));
    assert!(detail["customerPerson"].is_object());
    api.update_isv_info("https://relay.example.com/callbacks/acme", None).await.unwrap();
    assert_eq!(platform.registered_callback().unwrap()["callbackUrl"], "https://relay.example.com/callbacks/acme");
}

#[tokio::test]
async fn a_wrong_secret_is_a_typed_401_and_is_not_retried() {
    let (platform, base) = mock(vec![(43, 3)]).await;
    let api = client(&platform, &base, Some("not-the-secret-000000000000000000"));
    match api.get_tenant().await {
        Err(ApiError::Unauthorized(message)) => assert!(!message.is_empty()),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert_eq!(platform.requests_served(), 1, "a refusal is not worth retrying");
}

#[tokio::test]
async fn missing_things_and_bad_parameters_are_typed_errors() {
    let (platform, base) = mock(vec![(43, 3)]).await;
    let api = client(&platform, &base, None);
    assert!(matches!(api.get_job_detail(999).await, Err(ApiError::NotFound(_))));
    assert!(matches!(api.get_intent_level_tag(5).await, Err(ApiError::NotFound(_))));
    assert!(matches!(api.get_jobs(None, 0, 20).await, Err(ApiError::BadParameters(_))));
}

#[tokio::test]
async fn paging_through_a_thousand_records_sees_each_once() {
    let (platform, base) = mock(vec![(7, 1000)]).await;
    let api = client(&platform, &base, None);
    let mut ids = HashSet::new();
    let mut pages = 0;
    let mut cursor = api.call_record_pages(7);
    while let Some(records) = cursor.next().await.unwrap() {
        pages += 1;
        for record in records {
            assert!(ids.insert(record["callRecordId"].as_i64().unwrap()), "a record came twice");
        }
    }
    assert_eq!((ids.len(), pages), (1000, 10));
}

#[tokio::test]
async fn an_unreachable_platform_is_a_network_error_after_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let platform = MockPlatform::new(MockConfig::new(1, vec![]));
    let api = client(&platform, &base, None);
    let started = std::time::Instant::now();
    assert!(matches!(api.get_tenant().await, Err(ApiError::Network(_))));
    assert!(started.elapsed() >= std::time::Duration::from_millis(600), "two backoffs: 200 ms and 400 ms");
}

#[tokio::test]
async fn the_per_account_request_rate_is_respected() {
    let (platform, base) = mock(vec![(43, 3)]).await;
    let api = client_with_rate(&platform, &base, None, Some(10.0));
    let started = std::time::Instant::now();
    for _ in 0..6 {
        api.get_tenant().await.unwrap();
    }
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(480), "6 requests at 10/s took only {took:?}");
}

#[tokio::test]
async fn the_client_sends_only_the_vendors_headers_and_follows_no_redirect() {
    let (platform, base) = mock(vec![(43, 3)]).await;
    let api = client(&platform, &base, None);
    api.get_job_detail(43).await.unwrap();
    assert_eq!(platform.last_request_headers(), ["accept", "appkey", "host", "signature", "timestamp", "version"]);
    // A platform address that redirects elsewhere: the signed request is not repeated there.
    let elsewhere = platform.requests_served();
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect_base = format!("http://{}", redirector.local_addr().unwrap());
    let target = format!("{base}/apiOpen/v1/job/getJobDetail?robotCallJobId=43");
    let app = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move { (axum::http::StatusCode::FOUND, [(axum::http::header::LOCATION, target)]) }
    });
    tokio::spawn(async move { axum::serve(redirector, app).await });
    let redirected = client(&platform, &redirect_base, None).get_job_detail(43).await;
    assert!(matches!(redirected, Err(ApiError::Http(302))), "{redirected:?}");
    assert_eq!(platform.requests_served(), elsewhere, "the redirect was followed");
}
