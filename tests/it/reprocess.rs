//! After a key fix, `reprocess` turns callbacks that were kept as rejected into data.

use crate::common;
use crate::common::vectors;
use tanyi_relay::domain::InboxStatus;

use common::{databases, TestApp};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tanyi_relay::store::Store;

fn account(token: &str, key: &str) -> String {
    format!("[[accounts]]\nname = \"enc\"\ntoken = \"{token}\"\nencoding_aes_key = \"{key}\"\n")
}

#[tokio::test]
async fn rejected_encrypted_callbacks_are_stored_once_the_key_is_fixed() {
    for db in databases().await {
        // The platform encrypts a job completion with its key; the relay was configured with the
        // same token but another key (one from the `wrong_key` vector).
        let right = vectors::positive().into_iter().find(|v| v.name == "robot_call_job_completed").unwrap();
        let wrong_key = vectors::negative().into_iter().find(|v| v.name == "wrong_key").unwrap().encoding_aes_key;
        assert_ne!(wrong_key, right.encoding_aes_key);
        let settings = common::settings_with_accounts(&db.url, &account(&right.token, &wrong_key), &[]);
        let app = TestApp::spawn_settings(db.backend, settings).await;
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let url = format!(
            "{}/callbacks/enc?msg_signature={}&timestamp={}&nonce={}",
            app.base,
            enc(&right.msg_signature),
            enc(&right.timestamp),
            enc(&right.nonce)
        );
        let response = app.client.post(url).body(right.xml.clone()).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "signed with the token, but not decryptable with this key");
        assert_eq!(app.store.inbox("enc").await.unwrap()[0].status, InboxStatus::Rejected);
        app.stop().await;

        let fixed = std::env::temp_dir().join(format!("{}.toml", common::unique_name("fixed-key")));
        std::fs::write(&fixed, account(&right.token, &right.encoding_aes_key)).unwrap();
        let reprocess = || {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_tanyi-relay"))
                .args(["--config", fixed.to_str().unwrap(), "reprocess", "--account", "enc"])
                .env("TANYI_RELAY__DATABASE__URL", &db.url)
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
        };
        let first = reprocess();
        assert_eq!((first["examined"].as_u64(), first["stored"].as_u64()), (Some(1), Some(1)), "{:?}", db.backend);
        let store = Store::connect(&common::settings(&db, &[]).database).await.unwrap();
        assert_eq!(store.jobs("enc", 43).await.unwrap().len(), 1, "the job completion is data now");
        store.close().await;
        assert_eq!(reprocess()["already_stored"], 1, "running it again changes nothing");
        let _ = std::fs::remove_file(fixed);
    }
}
