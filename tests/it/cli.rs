//! The real binary: the operator subcommands, checked against the vendor's vectors.

use crate::common::vectors;

use std::process::{Command, Output};

fn relay(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tanyi-relay"));
    command.args(args).env_remove("TANYI_RELAY_CONFIG").env_remove("TANYI_RELAY_ENV");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn vector(name: &str) -> vectors::Positive {
    vectors::positive().into_iter().find(|v| v.name == name).expect("vector exists")
}

#[test]
fn crypto_encrypt_reproduces_the_vendors_message() {
    let v = vector("receive_id_chinese");
    let out = relay(
        &[
            "crypto",
            "encrypt",
            "--receive-id",
            &v.receive_id,
            "--timestamp",
            &v.timestamp,
            "--nonce",
            &v.nonce,
            "--random",
            &v.random,
            &v.plaintext,
        ],
        &[("TANYI_RELAY_CRYPTO_TOKEN", &v.token), ("TANYI_RELAY_CRYPTO_AES_KEY", &v.encoding_aes_key)],
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON output");
    assert_eq!(json["encrypt"], v.encrypt);
    assert_eq!(json["msg_signature"], v.msg_signature);
    assert_eq!(json["xml"], v.xml);
}

#[test]
fn crypto_decrypt_checks_the_signature_and_reads_xml_bodies() {
    let v = vector("robot_call_job_completed");
    let keys =
        [("TANYI_RELAY_CRYPTO_TOKEN", v.token.as_str()), ("TANYI_RELAY_CRYPTO_AES_KEY", v.encoding_aes_key.as_str())];
    let signed =
        ["crypto", "decrypt", "--signature", &v.msg_signature, "--timestamp", &v.timestamp, "--nonce", &v.nonce];
    let out = relay(&[&signed[..], &[v.xml_testdemo_style.as_str()]].concat(), &keys);
    assert_eq!(stdout(&out).trim_end(), v.plaintext);
    let wrong = relay(&[&signed[..5], &["1", "--nonce", &v.nonce, &v.encrypt]].concat(), &keys);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("signature does not match"));
    // The secrets never appear in what the command prints.
    assert!(!String::from_utf8_lossy(&wrong.stderr).contains(&v.encoding_aes_key));
}

#[test]
fn crypto_sign_matches_the_vendor() {
    let v = vector("nonce_sorts_before_timestamp");
    let out = relay(
        &["crypto", "sign", "--timestamp", &v.timestamp, "--nonce", &v.nonce, &v.encrypt],
        &[("TANYI_RELAY_CRYPTO_TOKEN", &v.token)],
    );
    assert_eq!(stdout(&out).trim(), v.msg_signature);
}

#[test]
fn check_config_accepts_the_defaults_and_names_a_bad_key() {
    let ok = stdout(&relay(&["check-config"], &[]));
    assert!(ok.contains("configuration is valid") && ok.contains("account: dev"), "{ok}");
    assert!(!ok.contains("dev-only-insecure-callback-key"), "{ok}");
    let bad = relay(&["check-config"], &[("TANYI_RELAY__SERVER__LISTEN", "not-an-address")]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("server.listen"));
    let production = relay(&["check-config"], &[("TANYI_RELAY_ENV", "production")]);
    assert!(!production.status.success());
    assert!(String::from_utf8_lossy(&production.stderr).contains("accounts[0].callback_key"));
}

/// `serve` on SQLite at `url`, port 0, JSON logs; returns the child and the address it listens on
/// (read from its "listening" log line). The rest of its log is drained in the background.
// The child is handed to the caller, which waits for it (see `terminate`).
#[allow(clippy::zombie_processes)]
fn start_serve(url: &str, extra_env: &[(&str, &str)]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut command = Command::new(env!("CARGO_BIN_EXE_tanyi-relay"));
    command
        .arg("serve")
        .env_remove("TANYI_RELAY_CONFIG")
        .env("TANYI_RELAY__SERVER__LISTEN", "127.0.0.1:0")
        .env("TANYI_RELAY__METRICS__LISTEN", "127.0.0.1:0")
        .env("TANYI_RELAY__DATABASE__URL", url)
        .env("TANYI_RELAY__TELEMETRY__FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("serve starts");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    loop {
        let line = lines.recv_timeout(std::time::Duration::from_secs(20)).expect("a log line within 20 s");
        let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if json["fields"]["message"] == "tanyi-relay listening" {
            assert_eq!(json["level"], "INFO");
            std::thread::spawn(move || lines.into_iter().for_each(drop));
            return (child, json["fields"]["addr"].as_str().unwrap().to_owned());
        }
    }
}

/// Sends SIGTERM and waits for a clean exit within `limit`.
fn terminate(child: &mut std::process::Child, limit: std::time::Duration) {
    let started = std::time::Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < limit, "did not exit within {limit:?} of SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_logs_json_lines_when_asked_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("relay.db").display());
    // start_serve fails unless the log lines are JSON and one says the service listens.
    let (mut child, _addr) = start_serve(&url, &[]);
    terminate(&mut child, std::time::Duration::from_secs(10));
}

#[test]
fn sigterm_under_load_loses_no_acknowledged_callback_and_exits_in_time() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("relay.db").display());
    let (mut child, addr) = start_serve(&url, &[("TANYI_RELAY__SERVER__DRAIN_SECS", "1")]);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let senders: Vec<_> = (0..8i64)
        .map(|sender| {
            let acked = acked.clone();
            let endpoint = format!("http://{addr}/callbacks/dev?key=dev-only-insecure-callback-key");
            runtime.spawn(async move {
                let client = reqwest::Client::builder().no_proxy().build().unwrap();
                for n in 0..10_000i64 {
                    let id = sender * 1_000_000 + n;
                    let body = serde_json::json!({"dataType": "ROBOT_CALL_RECORD", "data": {"callRecordId": id}});
                    let Ok(response) = client.post(&endpoint).body(body.to_string()).send().await else {
                        break; // the listener is gone
                    };
                    if response.text().await.is_ok_and(|t| t == "success") {
                        acked.lock().unwrap().push(id);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before_stop = acked.lock().unwrap().len();
    assert!(before_stop > 0, "the load is running");
    terminate(&mut child, std::time::Duration::from_secs(15));
    runtime.block_on(async {
        for sender in senders {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), sender).await;
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > before_stop, "callbacks were still served while draining");
    // Every acknowledged callback is in the database.
    let stored: std::collections::HashSet<i64> = runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let rows: Vec<(i64,)> =
            sqlx::query_as("SELECT call_record_id FROM call_records").fetch_all(&pool).await.unwrap();
        rows.into_iter().map(|(id,)| id).collect()
    });
    let lost: Vec<_> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "{} acknowledged callbacks lost: {lost:?}", lost.len());
}

#[tokio::test]
async fn completeness_prints_a_table_and_erase_counts_on_a_dry_run_then_erases() {
    let db = crate::common::sqlite().await;
    let app = crate::common::TestApp::spawn(&db).await;
    crate::common::assert_acked(app.post(crate::common::sample("call_record.json")).await).await;
    app.stop().await;
    let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(config.path(), crate::common::ACCOUNTS_TOML).unwrap();
    let with_config = |args: &[&str]| {
        let mut all = vec!["--config", config.path().to_str().unwrap()];
        all.extend_from_slice(args);
        relay(&all, &[("TANYI_RELAY__DATABASE__URL", db.url.as_str())])
    };

    let table = stdout(&with_config(&["completeness", "acme"]));
    let header = table.lines().next().unwrap_or_default();
    assert!(header.contains("job") && header.contains("state") && header.contains("missing"), "{table}");
    let row = table.lines().find(|l| l.contains("43")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("unknown"), "no API credentials: {row}");
    let one: serde_json::Value =
        serde_json::from_str(&stdout(&with_config(&["completeness", "acme", "43", "--json"]))).unwrap();
    assert_eq!(one[0]["calls"]["pushed"], 1);
    let missing = with_config(&["completeness", "acme", "999"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nothing is known about job 999"));

    let dry: serde_json::Value = serde_json::from_str(&stdout(&with_config(&[
        "erase",
        "--account",
        "acme",
        "--phone",
        "17751279857",
        "--dry-run",
    ])))
    .unwrap();
    assert_eq!(dry["call_record_ids"], serde_json::json!([119]));
    assert_eq!(dry["dry_run"], true);
    let erased: serde_json::Value =
        serde_json::from_str(&stdout(&with_config(&["erase", "--account", "acme", "--phone", "17751279857"]))).unwrap();
    assert_eq!(erased["counts"]["call_records"], 1);
    assert!(erased["erasure_id"].is_i64());
    let again: serde_json::Value =
        serde_json::from_str(&stdout(&with_config(&["erase", "--account", "acme", "--phone", "17751279857"]))).unwrap();
    assert_eq!(again["call_record_ids"], serde_json::json!([]), "nothing left to find");
    let bad = with_config(&["erase", "--account", "acme", "--phone", "12x"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("phone_number"));
}
