//! The operator console as a person uses it, in a real headless Chromium: signing in, the jobs
//! page in both languages, signing out; and over plain HTTP what a browser does not show: the
//! cookie's flags, the headers, CSRF, the limit on failed sign-ins, and no console without a token.

use crate::common;
use common::browser::Browser;
use common::{assert_acked, databases, TestApp};
use serde_json::json;

const ADMIN_TOKEN: &str = "console-admin-token-00000000001";

async fn seeded(db: &common::TestDb) -> TestApp {
    let app = TestApp::spawn_with(db, &[("TANYI_RELAY__ADMIN__TOKEN", ADMIN_TOKEN)]).await;
    // Job 43: one answered call (grade from the sample) and its completion.
    assert_acked(app.post(common::sample("call_record.json")).await).await;
    let completed =
        json!({"dataType": "ROBOT_CALL_JOB", "data": {"robotCallJobId": 43, "tenantId": 1, "status": "COMPLETED"}});
    assert_acked(app.post(completed.to_string()).await).await;
    app
}

#[tokio::test]
async fn an_operator_signs_in_sees_the_jobs_in_chinese_and_english_and_signs_out() {
    for db in databases().await {
        let app = seeded(&db).await;
        let Some(browser) = Browser::start("zh-CN").await else { return };
        browser.goto(&format!("{}/console/jobs", app.base)).await;
        assert!(browser.url().await.ends_with("/console/login"), "signed out: sent to the login form");
        assert_eq!(browser.text("h1").await, "登录");

        browser.type_into("#token", "not-the-token").await;
        browser.click("#sign-in").await;
        assert_eq!(browser.text(".error").await, "令牌不正确");

        browser.type_into("#token", ADMIN_TOKEN).await;
        browser.click("#sign-in").await;
        browser.wait_for_url("/console/jobs").await;
        assert_eq!(browser.text("h1").await, "任务");
        let row = browser.text("tr[data-job=\"43\"]").await;
        assert!(row.contains("43") && row.contains("未知（无接口凭据）"), "{row}");
        assert!(row.contains("尚无") || row.contains("20"), "completion time or not yet: {row}");
        let header = browser.text("table.jobs thead").await;
        assert!(header.contains("意向等级") && header.contains("接通率"), "{header}");

        // The switch shows the same page in English, and the choice is kept.
        browser.click("header nav a[hreflang=\"en\"]").await;
        browser.wait_for_url("?lang=en").await;
        assert_eq!(browser.text("h1").await, "Jobs");
        assert!(browser.text("tr[data-job=\"43\"]").await.contains("unknown (no API credentials)"));
        browser.goto(&format!("{}/console/jobs", app.base)).await;
        assert_eq!(browser.text("h1").await, "Jobs", "the language is remembered");

        browser.click("header form button").await;
        browser.wait_for_url("/console/login").await;
        browser.goto(&format!("{}/console/jobs", app.base)).await;
        assert!(browser.url().await.ends_with("/console/login"), "signed out means signed out");
        browser.quit().await;
        app.stop().await;
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn sign_in(app: &TestApp, client: &reqwest::Client, token: &str) -> reqwest::Response {
    client
        .post(format!("{}/console/login", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_session_cookie_the_headers_csrf_and_failed_sign_ins_are_what_a_console_needs() {
    let db = common::sqlite().await;
    let app = seeded(&db).await;
    let client = no_redirects();
    let login = client.get(format!("{}/console/login", app.base)).send().await.unwrap();
    assert_eq!(login.headers()["cache-control"], "no-store");
    assert_eq!(login.headers()["x-frame-options"], "DENY");
    assert!(login.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));

    let signed_in = sign_in(&app, &client, ADMIN_TOKEN).await;
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=28800"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP here");
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = client.get(format!("{}/console/jobs", app.base)).header("cookie", &session).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains("data-job=\"43\""));
    // Behind a TLS-terminating load balancer the cookie is Secure.
    let behind_tls = client
        .post(format!("{}/console/login", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-proto", "https")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert!(behind_tls.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));

    // Signing out needs the form's CSRF token.
    let forged = client
        .post(format!("{}/console/logout", app.base))
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(forged.headers()["cache-control"], "no-store");
    let refusal: serde_json::Value = serde_json::from_str(&forged.text().await.unwrap()).unwrap();
    assert_eq!(refusal["error"], "invalid_form_token", "a short JSON error");
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let out = client
        .post(format!("{}/console/logout", app.base))
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));

    // A forged or tampered cookie is no session.
    let tampered = session.replace("v1.", "v1.9");
    let refused = client.get(format!("{}/console/jobs", app.base)).header("cookie", tampered).send().await.unwrap();
    assert_eq!(refused.status(), 303);

    // Ten wrong tokens a minute, then even the right one waits.
    for _ in 0..10 {
        assert_eq!(sign_in(&app, &client, "wrong-token").await.status(), 401);
    }
    assert_eq!(sign_in(&app, &client, "wrong-token").await.status(), 429);
    assert_eq!(sign_in(&app, &client, ADMIN_TOKEN).await.status(), 429);
    app.stop().await;
}

#[tokio::test]
async fn without_an_admin_token_there_is_no_console() {
    let db = common::sqlite().await;
    let app = TestApp::spawn(&db).await;
    let response = no_redirects().get(format!("{}/console/login", app.base)).send().await.unwrap();
    assert_eq!(response.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn an_operator_sees_a_target_fail_and_replays_its_dead_deliveries_with_a_confirmation() {
    use common::receiver::{Behaviour, Receiver, SECRET};
    for db in databases().await {
        let crm = Receiver::start(Behaviour::AlwaysFail(503)).await;
        let accounts = format!(
            "{}\n[[targets]]\nname = \"crm\"\nurl = \"{}\"\nsecrets = [\"{SECRET}\"]\nmax_attempts = 1\n",
            common::ACCOUNTS_TOML,
            crm.url
        );
        let settings = common::settings_with_accounts(
            &db.url,
            &accounts,
            &[("TANYI_RELAY__ADMIN__TOKEN", ADMIN_TOKEN), ("TANYI_RELAY__DELIVERY__POLL_INTERVAL_MS", "50")],
        );
        let app = TestApp::spawn_settings(db.backend, settings).await;
        assert_acked(app.post(common::sample("call_record.json")).await).await;
        crm.wait_requests(1, std::time::Duration::from_secs(10)).await;
        let Some(browser) = Browser::start("en-US").await else { return };
        browser.goto(&format!("{}/console/login", app.base)).await;
        browser.type_into("#token", ADMIN_TOKEN).await;
        browser.click("#sign-in").await;
        browser.wait_for_url("/console/jobs").await;

        // The delivery went dead after its one attempt; the page shows it and why.
        let start = std::time::Instant::now();
        loop {
            browser.goto(&format!("{}/console/deliveries", app.base)).await;
            if browser.text("section[data-target=\"crm\"] dd.dead").await == "1" {
                break;
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(10), "{:?}: never dead", db.backend);
        }
        assert!(browser.text("section[data-target=\"crm\"] dd.last-error").await.contains("503"));

        // The receiver is back; replaying needs the confirmation box, then it is delivered.
        crm.set(Behaviour::Accept);
        browser.click("section[data-target=\"crm\"] input[name=\"confirm\"]").await;
        browser.click("section[data-target=\"crm\"] form.replay button").await;
        browser.wait_for_url("replayed=1").await;
        assert_eq!(browser.text("#replayed").await, "1");
        crm.wait_delivered(1, std::time::Duration::from_secs(10)).await;
        browser.quit().await;

        // Over HTTP: no CSRF token, no replay; no confirmation, no replay.
        let client = no_redirects();
        let cookie = sign_in(&app, &client, ADMIN_TOKEN).await.headers()["set-cookie"].to_str().unwrap().to_owned();
        let session = cookie.split(';').next().unwrap().to_owned();
        let replay = |body: String| {
            client
                .post(format!("{}/console/deliveries/crm/replay", app.base))
                .header("cookie", &session)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
        };
        assert_eq!(replay("confirm=yes".into()).await.unwrap().status(), 403);
        let html = client
            .get(format!("{}/console/deliveries", app.base))
            .header("cookie", &session)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        assert_eq!(replay(format!("csrf={csrf}")).await.unwrap().status(), 400, "no confirmation");
        let unknown = client
            .post(format!("{}/console/deliveries/nobody/replay", app.base))
            .header("cookie", &session)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}&confirm=yes"))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 404);
        app.stop().await;
    }
}

#[tokio::test]
async fn an_operator_finds_a_call_reads_its_transcript_and_reveals_the_number_only_on_request() {
    for db in databases().await {
        let app = seeded(&db).await;
        let sample = common::sample_json("call_record.json");
        let first_turn = sample["data"]["callDetailList"][0]["text"].as_str().unwrap().to_owned();
        let Some(browser) = Browser::start("zh-CN").await else { return };
        browser.goto(&format!("{}/console/login", app.base)).await;
        browser.type_into("#token", ADMIN_TOKEN).await;
        browser.click("#sign-in").await;
        browser.wait_for_url("/console/jobs").await;

        browser.goto(&format!("{}/console/calls", app.base)).await;
        browser.type_into("input[name=\"job\"]", "43").await;
        browser.click("#filter").await;
        browser.wait_for_url("job=43").await;
        let row = browser.text("tr[data-call=\"119\"]").await;
        assert!(row.contains("177****9857") && row.contains("已接听"), "masked in the list: {row}");
        assert!(!row.contains("17751279857"));
        // Another job's filter finds nothing.
        browser.goto(&format!("{}/console/calls?job=44", app.base)).await;
        assert_eq!(browser.text("main p").await, "没有符合条件的通话");

        browser.goto(&format!("{}/console/calls?job=43", app.base)).await;
        browser.click("tr[data-call=\"119\"] a").await;
        browser.wait_for_url("/console/calls/acme/119").await;
        assert_eq!(browser.text("#phone").await, "177****9857");
        assert!(browser.text("ol.transcript li").await.contains(&first_turn), "the transcript as a conversation");
        browser.click("#reveal").await;
        browser.wait_for_url("/reveal").await;
        assert_eq!(browser.text("#phone").await, "17751279857", "{:?}", db.backend);
        browser.quit().await;
        app.stop().await;
    }
}
