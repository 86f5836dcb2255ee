//! A full run of the real binary at debug log level (plain and encrypted callbacks, the URL check,
//! wrong keys, reconciliation and enrichment against the mock platform's signed API, deliveries
//! that fail and are retried, the admin API with right and wrong tokens, a graceful stop): its
//! whole log holds no configured secret, no secret a caller tried, and no full phone number.

use crate::common;
use crate::common::process;
use crate::common::receiver;

use std::time::Duration;

use common::{client, databases, Backend, KEY};
use process::RelayProcess;
use receiver::{Behaviour, Receiver, SECRET};
use serde_json::Value;
use tanyi_relay::platform::crypto::CallbackCrypto;
use tanyi_relay::sim::mock_platform::{MockConfig, MockPlatform};
use tanyi_relay::sim::simulate::{self, Auth, Options, RetrySchedule};

const TOKEN: &str = "AIGbuK3sOV";
const AES_KEY: &str = "INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCknw";
const ADMIN_TOKEN: &str = "admin-token-never-logged-0001";
const HEADER_SECRET: &str = "crm-api-key-never-logged";
const DB_PASSWORD: &str = "db-password-never-logged";
const WRONG_KEY: &str = "a-wrong-key-also-never-logged";
const WRONG_ADMIN_TOKEN: &str = "a-wrong-admin-token-never-logged";
const SEED: u64 = 77;
const JOB: i64 = 9_000;

fn options(url: String, auth: Auth) -> Options {
    Options {
        url,
        auth,
        calls: 40,
        jobs: 1,
        concurrency: 8,
        rate: None,
        duplicates: 0.1,
        seed: SEED,
        retry: RetrySchedule::Compressed,
    }
}

/// Every phone number the campaign carries.
fn phone_numbers(options: &Options) -> Vec<String> {
    let mut numbers = Vec::new();
    for body in simulate::campaign(options).into_iter().flat_map(|j| j.callbacks) {
        let callback: Value = serde_json::from_str(&body).unwrap();
        for field in ["calledPhoneNumber", "phoneNumber"] {
            if let Some(number) = callback["data"][field].as_str() {
                numbers.push(number.to_owned());
            }
        }
    }
    numbers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_log_of_a_full_run_holds_no_secret_and_no_full_phone_number() {
    for db in databases().await {
        // Postgres with trust authentication ignores the password, so it can be given and checked.
        let database_url = match db.backend {
            Backend::Postgres => db.url.replacen("postgres@", &format!("postgres:{DB_PASSWORD}@"), 1),
            Backend::Sqlite => db.url.clone(),
        };
        let platform = MockPlatform::new(MockConfig::new(SEED, vec![(JOB, 40)]));
        let api = platform.clone().start("127.0.0.1:0").await.unwrap();
        let mock = platform.config().clone();
        let crm = Receiver::start(Behaviour::FailFirst { count: 6, status: 500, retry_after: None }).await;
        let config = format!(
            "[database]\nurl = \"{database_url}\"\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n\
             [delivery]\npoll_interval_ms = 100\n\
             [[accounts]]\nname = \"acme\"\ncallback_key = \"{KEY}\"\nenrich_calls = true\n\
             [accounts.api]\nbase_url = \"{api}\"\napp_key = \"{}\"\napp_secret = \"{}\"\ntenant_sign = \"{}\"\n\
             [[accounts]]\nname = \"secure\"\ntoken = \"{TOKEN}\"\nencoding_aes_key = \"{AES_KEY}\"\n\
             [[targets]]\nname = \"crm\"\nurl = \"{}\"\nsecrets = [\"{SECRET}\"]\nheaders = {{ \"x-api-key\" = \"{HEADER_SECRET}\" }}\n\
             retry_schedule_secs = [0.1]\n",
            mock.app_key, mock.app_secret, mock.tenant_sign, crm.url
        );
        let dir = tempfile::tempdir().unwrap();
        let mut relay = RelayProcess::start_with_env(dir.path(), "relay", &config, &[("RUST_LOG", "debug")]).await;

        let plain = options(relay.callback_url("acme"), Auth::Plain { key: KEY.to_owned() });
        let crypto = CallbackCrypto::new(TOKEN, AES_KEY, "").unwrap();
        let encrypted = Options {
            seed: SEED + 1,
            ..options(relay.callback_url("secure"), Auth::Encrypted { crypto: crypto.clone() })
        };
        let (a, b) = tokio::join!(simulate::run(plain.clone()), simulate::run(encrypted.clone()));
        assert_eq!((a.given_up, b.given_up), (0, 0));

        let http = client();
        let now = chrono::Utc::now().timestamp_millis().to_string();
        let url_check = crypto.seal("echo-me", &now, "8214825565", b"Xq3kP9zLm2Rt7VwY");
        let check = http
            .get(format!(
                "{}?msg_signature={}&timestamp={now}&nonce=8214825565&echostr={}",
                relay.callback_url("secure"),
                url_check.msg_signature,
                percent_encoding::utf8_percent_encode(&url_check.encrypt, percent_encoding::NON_ALPHANUMERIC)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(check.text().await.unwrap(), "echo-me");
        let wrong =
            http.post(format!("{}?key={WRONG_KEY}", relay.callback_url("acme"))).body("{}").send().await.unwrap();
        assert_eq!(wrong.status(), 401);
        for token in [ADMIN_TOKEN, WRONG_ADMIN_TOKEN] {
            http.get(format!("{}/admin/deliveries", relay.base)).bearer_auth(token).send().await.unwrap();
        }
        crm.wait_delivered(a.callbacks as usize, Duration::from_secs(60)).await;
        // Reconciliation and enrichment run after the callbacks, inside the relay.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !["target=reconcile.acme", "target=enrich.acme"].iter().all(|done| relay.log().contains(done)) {
            assert!(std::time::Instant::now() < deadline, "reconciliation and enrichment did not run");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        relay.terminate().await;

        let log = relay.log();
        for sign_of_work in ["call record stored", "delivery failed; will retry", "reconcile.acme", "enrich.acme"] {
            assert!(log.contains(sign_of_work), "the run did `{sign_of_work}`:\n{log}");
        }
        let mut forbidden: Vec<String> = [
            KEY,
            TOKEN,
            AES_KEY,
            ADMIN_TOKEN,
            WRONG_ADMIN_TOKEN,
            WRONG_KEY,
            HEADER_SECRET,
            DB_PASSWORD,
            SECRET,
            SECRET.trim_start_matches("whsec_"),
            mock.app_secret.as_str(),
        ]
        .map(String::from)
        .to_vec();
        let phones: Vec<String> = phone_numbers(&plain).into_iter().chain(phone_numbers(&encrypted)).collect();
        assert!(phones.len() >= 80, "the campaigns carry phone numbers");
        forbidden.extend(phones);
        for secret in &forbidden {
            assert!(!log.contains(secret.as_str()), "{:?}: `{secret}` is in the log", db.backend);
        }
    }
}
