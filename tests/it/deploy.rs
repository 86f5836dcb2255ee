//! The deployment files say what the relay understands: parsed, and their settings loaded by the
//! relay's own configuration code.

use std::collections::HashMap;
use std::path::PathBuf;

use base64::Engine;
use tanyi_relay::config::Settings;
use yaml_rust2::{Yaml, YamlLoader};

fn file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn load(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&std::fs::read_to_string(file(path)).unwrap()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A compose service with its `<<` merge key resolved (YAML 1.2 parsers leave it to the reader).
fn service(compose: &Yaml, name: &str) -> HashMap<String, Yaml> {
    let mut merged = HashMap::new();
    let own = compose["services"][name].as_hash().unwrap_or_else(|| panic!("no service {name}"));
    if let Some(base) = own.get(&Yaml::String("<<".into())).and_then(Yaml::as_hash) {
        merged.extend(base.iter().map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone())));
    }
    merged.extend(
        own.iter().filter(|(k, _)| k.as_str() != Some("<<")).map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone())),
    );
    merged
}

fn scalar(value: &Yaml) -> String {
    match value {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// `${VAR:-default}` as compose expands it with VAR unset.
fn expand_defaults(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map(|e| start + e).expect("closed ${");
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, default)| default));
        rest = &rest[end + 1..];
    }
    out + rest
}

/// Where the deployments mount their secrets, each a file.
const SECRETS_DIR: &str = "/run/secrets/tanyi-relay/";

/// Real-looking values for each secret file the deployments name (a fresh random value each).
fn random_secret(name: &str) -> String {
    let random = |n: usize| {
        let mut bytes = vec![0u8; n];
        getrandom::getrandom(&mut bytes).unwrap();
        bytes
    };
    match name {
        "database-url" => format!("postgres://relay:{}@postgres:5432/relay", hex::encode(random(12))),
        "crm-webhook-secret" => format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(random(24))),
        _ => hex::encode(random(16)),
    }
}

/// The secret files a deployment would mount, written into `dir` with `values`, and `text` (a
/// configuration or an environment value) pointed at them.
fn mount_secrets(dir: &std::path::Path, text: &str, values: &HashMap<String, String>) -> String {
    for (name, value) in values {
        std::fs::write(dir.join(name), format!("{value}\n")).unwrap();
    }
    text.replace(SECRETS_DIR, &format!("{}/", dir.display()))
}

/// Inline secrets: an environment variable of a secret setting given a value instead of a file.
fn inline_secrets(env: &HashMap<String, String>) -> Vec<String> {
    env.keys()
        .filter(|k| k.starts_with("TANYI_RELAY__") && !k.ends_with("__FILE") && !k.ends_with("__ENV"))
        .filter(|k| ["TOKEN", "KEY", "SECRET", "DATABASE__URL", "PASSWORD"].iter().any(|word| k.contains(word)))
        .cloned()
        .collect()
}

#[test]
fn the_compose_file_runs_postgres_the_migrations_and_two_replicas_with_secrets_from_files() {
    let compose = &load("deploy/compose.yaml")[0];
    assert!(compose["services"]["postgres"]["healthcheck"].as_hash().is_some());
    let migrate = service(compose, "migrate");
    assert_eq!(migrate["command"][0].as_str(), Some("migrate"));
    let text = std::fs::read_to_string(file("deploy/compose.yaml")).unwrap();
    assert!(!text.contains("whsec_") && !text.contains("PASSWORD:"), "a secret value in compose.yaml");
    let declared: Vec<String> =
        compose["secrets"].as_hash().unwrap().keys().map(|k| k.as_str().unwrap().to_owned()).collect();
    for replica in ["relay-1", "relay-2"] {
        let relay = service(compose, replica);
        assert_eq!(relay["command"][0].as_str(), Some("serve"), "{replica}");
        assert_eq!(
            relay["depends_on"]["migrate"]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{replica} starts after the migrations"
        );
        assert_eq!(relay["read_only"].as_bool(), Some(true), "{replica}: read-only root");
        let env: HashMap<String, String> = relay["environment"]
            .as_hash()
            .unwrap()
            .iter()
            .map(|(k, v)| (scalar(k), expand_defaults(&scalar(v))))
            .collect();
        assert_eq!(inline_secrets(&env), Vec::<String>::new(), "{replica}: secrets given inline");
        assert_eq!(env["TANYI_RELAY_CONFIG"], "/config/relay.toml");
        let mounted = relay["volumes"][0].as_str().unwrap();
        assert!(mounted.starts_with("./relay.example.toml:/config/relay.toml"), "{mounted}");
        let secrets: Vec<&str> =
            relay["secrets"].as_vec().unwrap().iter().map(|s| s["source"].as_str().unwrap()).collect();
        for secret in &secrets {
            assert!(declared.iter().any(|d| d == secret), "{replica}: secret {secret} is not declared");
        }
        // The relay's own loader accepts this environment with the mounted file and real values, in
        // production mode; with a secret missing it stops naming it.
        let dir = tempfile::tempdir().unwrap();
        let values: HashMap<String, String> = secrets.iter().map(|s| (s.to_string(), random_secret(s))).collect();
        let config = dir.path().join("relay.toml");
        let toml = std::fs::read_to_string(file("deploy/relay.example.toml")).unwrap();
        std::fs::write(&config, mount_secrets(dir.path(), &toml, &values)).unwrap();
        let mut env: HashMap<String, String> =
            env.into_iter().map(|(k, v)| (k, mount_secrets(dir.path(), &v, &HashMap::new()))).collect();
        env.insert("TANYI_RELAY_CONFIG".into(), config.display().to_string());
        let settings = Settings::from_sources(None, env.clone()).unwrap_or_else(|e| panic!("{replica}: {e}"));
        assert_eq!(settings.server.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(settings.database.url.expose(), values["database-url"]);
        assert!(!settings.database.migrate_on_start, "migrations run once, in their own service");
        assert!(settings.accounts[0].accepts_key(values["acme-callback-key"].as_bytes()));
        std::fs::remove_file(dir.path().join("acme-callback-key")).unwrap();
        let missing = Settings::from_sources(None, env).unwrap_err().to_string();
        assert!(missing.contains("accounts[0].callback_key: cannot read"), "{missing}");
    }
}

#[test]
fn the_kubernetes_deployment_has_two_replicas_probes_limits_and_secrets_from_its_secret() {
    let documents = load("deploy/kubernetes/relay.yaml");
    let find =
        |kind: &str| documents.iter().find(|d| d["kind"].as_str() == Some(kind)).unwrap_or_else(|| panic!("no {kind}"));
    let deployment = find("Deployment");
    assert_eq!(deployment["spec"]["replicas"].as_i64(), Some(2));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let container = &pod["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
    assert!(container["resources"]["limits"]["memory"].as_str().is_some());
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"));
    let secret_volume = pod["volumes"].as_vec().unwrap().iter().find(|v| v["secret"]["secretName"].as_str().is_some());
    assert_eq!(secret_volume.map(|v| v["secret"]["secretName"].as_str()), Some(Some("tanyi-relay")));
    assert_eq!(find("Job")["spec"]["template"]["spec"]["containers"][0]["args"][0].as_str(), Some("migrate"));
    assert_eq!(find("PodDisruptionBudget")["spec"]["minAvailable"].as_i64(), Some(1));
    let toml = find("ConfigMap")["data"]["relay.toml"].as_str().unwrap();
    assert!(!toml.contains("whsec_"), "a secret value in the ConfigMap");
    let env: HashMap<String, String> =
        container["env"].as_vec().unwrap().iter().map(|e| (scalar(&e["name"]), scalar(&e["value"]))).collect();
    assert_eq!(inline_secrets(&env), Vec::<String>::new(), "secrets given inline");
    // The pod's environment and the ConfigMap's file make valid settings with real values in the
    // Secret, and the example Secret's placeholders are refused, each named.
    let example = &load("deploy/kubernetes/secret.example.yaml")[0];
    let example: HashMap<String, String> =
        example["stringData"].as_hash().unwrap().iter().map(|(k, v)| (scalar(k), scalar(v))).collect();
    let real: HashMap<String, String> = example.keys().map(|k| (k.clone(), random_secret(k))).collect();
    for (values, accepted) in [(&real, true), (&example, false)] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("relay.toml");
        std::fs::write(&config, mount_secrets(dir.path(), toml, values)).unwrap();
        let mut env: HashMap<String, String> =
            env.iter().map(|(k, v)| (k.clone(), mount_secrets(dir.path(), v, &HashMap::new()))).collect();
        env.insert("TANYI_RELAY_CONFIG".into(), config.display().to_string());
        match Settings::from_sources(None, env) {
            Ok(settings) if accepted => {
                let limit = container["resources"]["limits"]["memory"].as_str().unwrap();
                let mebibytes: u64 = limit.strip_suffix("Mi").expect("a limit in Mi").parse().unwrap();
                let bound = settings.memory_bound_bytes() >> 20;
                assert!(mebibytes >= bound, "the memory limit {limit} is under the relay's bound of {bound} MiB");
                assert!(settings.admin.token.is_some());
                assert_eq!(settings.accounts[0].name, "acme");
                assert_eq!(settings.targets[0].secrets[0].expose(), real["crm-webhook-secret"]);
            }
            Ok(_) => panic!("the example Secret's placeholders were accepted in production"),
            Err(e) if accepted => panic!("{e}"),
            Err(e) => {
                let text = e.to_string();
                for key in ["database.url", "admin.token", "accounts[0].callback_key", "targets[0].secrets[0]"] {
                    assert!(text.contains(&format!("{key}: is a public example value")), "{key} accepted: {text}");
                }
            }
        }
    }
}
