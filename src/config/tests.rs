use std::collections::HashMap;

use chrono::FixedOffset;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn file(content: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp file");
    std::io::Write::write_all(&mut f, content.as_bytes()).expect("write temp file");
    f
}

fn invalid(file_content: &str, pairs: &[(&str, &str)]) -> String {
    let f = file(file_content);
    Settings::from_sources(Some(f.path()), env(pairs)).expect_err("invalid").to_string()
}

#[test]
fn defaults_run_on_sqlite_with_the_development_account() {
    let settings = Settings::from_sources(None, env(&[])).expect("defaults are valid");
    assert_eq!(settings.database.url.expose(), "sqlite://data/tanyi-relay.db");
    assert_eq!(settings.database.backend, DatabaseBackend::Sqlite);
    assert_eq!(settings.server.body_limit_bytes, 256 * 1024);
    assert_eq!(settings.accounts.len(), 1);
    assert!(settings.accounts[0].uses_development_key());
    assert_eq!(settings.accounts[0].utc_offset, FixedOffset::east_opt(8 * 3600).unwrap());
    assert!(settings.admin.token.is_none());
}

#[test]
fn environment_overrides_the_file_which_overrides_the_defaults() {
    let f = file("[server]\nlisten = \"0.0.0.0:9000\"\nbody_limit_bytes = 2048\n");
    let settings = Settings::from_sources(Some(f.path()), env(&[("TANYI_RELAY__SERVER__BODY_LIMIT_BYTES", "4096")]))
        .expect("valid");
    assert_eq!(settings.server.listen, "0.0.0.0:9000".parse().unwrap());
    assert_eq!(settings.server.body_limit_bytes, 4096);
}

#[test]
fn the_config_file_can_come_from_the_environment() {
    let f = file("[database]\nurl = \"postgres://u@db/relay\"\n");
    let path = f.path().to_string_lossy().to_string();
    let settings = Settings::from_sources(None, env(&[(CONFIG_FILE_VAR, &path)])).expect("valid");
    assert_eq!(settings.database.url.expose(), "postgres://u@db/relay");
    assert_eq!(settings.database.backend, DatabaseBackend::Postgres);
}

#[test]
fn invalid_values_are_reported_with_their_keys() {
    let text = invalid(
        "[[accounts]]\nname = \"bad name\"\ncallback_key = \"short\"\nutc_offset = \"8h\"\n\
         [[accounts]]\nname = \"bad name\"\ncallback_key = \"long-enough-key-0001\"\n",
        &[("TANYI_RELAY__SERVER__LISTEN", "nowhere")],
    );
    for expected in [
        "server.listen",
        "accounts[0].name",
        "accounts[0].callback_key",
        "accounts[0].utc_offset",
        "accounts[1].name: `bad name` is already used by accounts[0]",
    ] {
        assert!(text.contains(expected), "{expected} missing from: {text}");
    }
    assert!(!text.contains("short"), "a secret leaked into: {text}");
}

#[test]
fn a_wrongly_typed_value_names_its_key() {
    let err =
        Settings::from_sources(None, env(&[("TANYI_RELAY__SERVER__BODY_LIMIT_BYTES", "lots")])).expect_err("invalid");
    assert!(err.to_string().contains("body_limit_bytes"), "{err}");
}

#[test]
fn unknown_keys_are_refused() {
    let text = invalid("[server]\nlisten_adress = \"0.0.0.0:1\"\n", &[]);
    assert!(text.contains("listen_adress"), "{text}");
}

#[test]
fn encrypted_accounts_are_validated_without_printing_their_secrets() {
    let text = invalid(
        "[[accounts]]\nname = \"a\"\ntoken = \"tok-secret-1\"\nencoding_aes_key = \"INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCkn\"\n\
         [[accounts]]\nname = \"b\"\ntoken = \"tok-secret-2\"\n\
         [[accounts]]\nname = \"c\"\ntoken = \"tok-secret-3\"\nencoding_aes_key = \"INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDC!nw\"\n\
         [[accounts]]\nname = \"d\"\ntoken = \"tok-secret-4\"\nencoding_aes_key = \"INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCknw\"\ncallback_key = \"plain-key-0000000001\"\n\
         [[accounts]]\nname = \"e\"\n",
        &[],
    );
    for expected in [
        "accounts[0].encoding_aes_key: must be exactly 43 characters (it has 42)",
        "accounts[1].encoding_aes_key: required when token is set",
        "accounts[2].encoding_aes_key: is not base64",
        "accounts[3].callback_key: set, but an encrypted account refuses plain callbacks",
        "accounts[4].callback_key: required",
    ] {
        assert!(text.contains(expected), "{expected} missing from: {text}");
    }
    assert!(!text.contains("tok-secret") && !text.contains("INnZzJ"), "a secret leaked into: {text}");
}

#[test]
fn an_encrypted_account_may_also_accept_plain_callbacks() {
    let f = file(
        "[[accounts]]\nname = \"a\"\ntoken = \"tok\"\nencoding_aes_key = \"INnZzJ/DPbUqqtU2ycEhzL8ewpsCRb9XqHBWHdDCknw\"\n\
         callback_key = \"plain-key-0000000001\"\nallow_plain = true\n",
    );
    let settings = Settings::from_sources(Some(f.path()), env(&[])).expect("valid");
    assert!(settings.accounts[0].accepts_key(b"plain-key-0000000001"));
    assert!(settings.accounts[0].crypto.is_some());
}

#[test]
fn production_refuses_the_development_key() {
    let err = Settings::from_sources(None, env(&[(ENVIRONMENT_VAR, "production")])).expect_err("refused");
    assert!(err.to_string().contains("accounts[0].callback_key"), "{err}");
    assert!(!err.to_string().contains(DEVELOPMENT_CALLBACK_KEY));
}

#[test]
fn debug_output_never_contains_secrets() {
    let settings = Settings::from_sources(None, env(&[])).expect("valid");
    let dump = format!("{settings:?}");
    assert!(!dump.contains(DEVELOPMENT_CALLBACK_KEY));
    assert!(!dump.contains("sqlite://data"));
}

#[test]
fn secrets_come_from_the_environment_or_a_file_with_their_origin_kept() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("acme-key");
    std::fs::write(&key_file, "acme-key-from-a-file-01\n").unwrap();
    let f = file(&format!(
        "[[accounts]]\nname = \"acme\"\ncallback_key = {{ file = \"{}\" }}\ncallback_keys = [{{ env = \"ACME_NEXT\" }}]\n",
        key_file.display()
    ));
    let settings = Settings::from_sources(
        Some(f.path()),
        env(&[
            ("ACME_NEXT", "acme-key-from-the-env-2"),
            ("TANYI_RELAY__ADMIN__TOKEN__FILE", &key_file.to_string_lossy()),
        ]),
    )
    .expect("valid");
    let account = &settings.accounts[0];
    assert!(account.accepts_key(b"acme-key-from-a-file-01"), "the file's trailing newline is dropped");
    assert!(account.accepts_key(b"acme-key-from-the-env-2"), "a second key while rotating");
    assert!(!account.accepts_key(b"acme-key-from-a-file-01\n"));
    assert_eq!(account.callback_keys[1].origin().to_string(), "env ACME_NEXT");
    let admin = settings.admin.token.as_ref().expect("admin token from a file");
    assert_eq!(admin.origin(), &crate::secret::SecretOrigin::File(key_file));
}

#[test]
fn a_missing_variable_or_file_stops_start_up_naming_the_key_not_the_value() {
    let text = invalid(
        "[[accounts]]\nname = \"acme\"\ncallback_key = { env = \"ACME_KEY\" }\n[admin]\ntoken = { file = \"/nonexistent/admin\" }\n",
        &[],
    );
    assert!(text.contains("accounts[0].callback_key: environment variable ACME_KEY is not set"), "{text}");
    assert!(text.contains("admin.token: cannot read /nonexistent/admin"), "{text}");
}

#[test]
fn secrets_from_the_environment_are_text_even_when_they_are_digits() {
    let token = "1234567890123456789012";
    let settings = Settings::from_sources(None, env(&[("TANYI_RELAY__ADMIN__TOKEN", token)])).expect("valid");
    assert_eq!(settings.admin.token.as_ref().map(|t| t.expose()), Some(token));
    let text = invalid("[admin]\ntoken = 12345678901234567\n", &[]);
    assert!(text.contains("quoted string"), "{text}");
}

#[test]
fn accounts_and_targets_in_the_environment_are_refused_with_the_way_to_do_it() {
    let err = Settings::from_sources(None, env(&[("TANYI_RELAY__ACCOUNTS__0__CALLBACK_KEY", "x")])).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("TANYI_RELAY__ACCOUNTS__0__CALLBACK_KEY") && text.contains("{ env = \"NAME\" }"), "{text}");
    assert!(!text.contains(": x"), "{text}");
}

#[test]
fn targets_are_parsed_once_and_bad_ones_named() {
    let text = invalid(
        "[[targets]]\nname = \"crm\"\nurl = \"ftp://x\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\", \"nope\"]\n\
         events = [\"call.done\"]\nmax_in_flight = 0\nheaders = { \"webhook-id\" = \"x\", \"bad header\" = \"y\" }\n",
        &[],
    );
    for expected in [
        "targets[0].url:",
        "targets[0].secrets[1]:",
        "targets[0].events: `call.done`",
        "targets[0].headers.webhook-id: set by the relay",
        "targets[0].headers.bad header:",
        "targets[0].max_in_flight:",
    ] {
        assert!(text.contains(expected), "{expected} missing from {text}");
    }
    assert!(!text.contains("whsec_MfKQ"), "a secret leaked: {text}");
    let f = file(
        "[[targets]]\nname = \"crm\"\nurl = \"https://crm.example.com/h\"\nsecrets = [{ env = \"CRM_SECRET\" }]\n\
         events = [\"call.finished\"]\nheaders = { \"x-api-key\" = { env = \"CRM_API_KEY\" } }\nretry_schedule_secs = [1, 2]\n",
    );
    let settings = Settings::from_sources(
        Some(f.path()),
        env(&[("CRM_SECRET", "whsec_aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ="), ("CRM_API_KEY", "k-123")]),
    )
    .expect("valid");
    let target = &settings.targets[0];
    assert_eq!(target.events, vec![crate::domain::EventType::CallFinished]);
    assert_eq!(target.signing_keys[0], b"hello world hello world");
    assert_eq!(target.headers[0].1.expose(), "k-123");
    assert_eq!(target.max_attempts, 3, "one more than the schedule's steps");
}

#[test]
fn production_refuses_every_public_example_secret() {
    let text = invalid(
        "[[accounts]]\nname = \"acme\"\ncallback_key = \"change-me-to-a-long-random-string\"\n\
         [[targets]]\nname = \"crm\"\nurl = \"https://crm.example.com/h\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n\
         [admin]\ntoken = \"a-long-random-admin-token-000000\"\n",
        &[(ENVIRONMENT_VAR, "production")],
    );
    for expected in ["accounts[0].callback_key", "targets[0].secrets[0]", "admin.token"] {
        assert!(text.contains(&format!("{expected}: is a public example value")), "{expected} missing from {text}");
    }
}

#[test]
fn the_platform_api_needs_https_except_on_this_machine() {
    let api = |url: &str| {
        format!(
            "[[accounts]]\nname = \"acme\"\ncallback_key = \"acme-callback-key-0001\"\n[accounts.api]\nbase_url = \"{url}\"\n\
             app_key = \"k\"\napp_secret = \"s\"\ntenant_sign = \"t\"\n"
        )
    };
    for url in ["https://openapi.tanyibot.com", "http://127.0.0.1:9090", "http://localhost:9090", "http://[::1]:9090"] {
        let f = file(&api(url));
        assert!(Settings::from_sources(Some(f.path()), env(&[])).is_ok(), "{url}");
    }
    let text = invalid(&api("http://openapi.tanyibot.com"), &[]);
    assert!(text.contains("accounts[0].api.base_url: `http://openapi.tanyibot.com` must be an https URL"), "{text}");
}
