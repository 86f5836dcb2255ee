//! The deployment files say what the relay understands: parsed, and their settings loaded by the
//! relay's own configuration code.

use std::collections::HashMap;
use std::path::PathBuf;

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

#[test]
fn the_compose_file_runs_postgres_the_migrations_and_two_replicas_the_relay_can_start_with() {
    let compose = &load("deploy/compose.yaml")[0];
    assert!(compose["services"]["postgres"]["healthcheck"].as_hash().is_some());
    let migrate = service(compose, "migrate");
    assert_eq!(migrate["command"][0].as_str(), Some("migrate"));
    for replica in ["relay-1", "relay-2"] {
        let relay = service(compose, replica);
        assert_eq!(relay["command"][0].as_str(), Some("serve"), "{replica}");
        assert_eq!(
            relay["depends_on"]["migrate"]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{replica} starts after the migrations"
        );
        let env: HashMap<String, String> = relay["environment"]
            .as_hash()
            .unwrap()
            .iter()
            .map(|(k, v)| (scalar(k), expand_defaults(&scalar(v))))
            .collect();
        assert_eq!(env["TANYI_RELAY_CONFIG"], "/config/relay.toml");
        let mounted = relay["volumes"][0].as_str().unwrap();
        assert!(mounted.starts_with("./relay.example.toml:/config/relay.toml"), "{mounted}");
        // The relay's own loader accepts this environment with the mounted file, in production mode.
        let mut env = env;
        env.insert("TANYI_RELAY_CONFIG".into(), file("deploy/relay.example.toml").display().to_string());
        let settings = Settings::from_sources(None, env).unwrap_or_else(|e| panic!("{replica}: {e}"));
        assert_eq!(settings.server.listen, "0.0.0.0:8080");
        assert!(settings.database.url.expose().starts_with("postgres://relay:relay@postgres:5432/relay"));
        assert!(!settings.database.migrate_on_start, "migrations run once, in their own service");
    }
}

#[test]
fn the_kubernetes_deployment_has_two_replicas_probes_limits_and_valid_settings() {
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
    assert_eq!(container["envFrom"][0]["secretRef"]["name"].as_str(), Some("tanyi-relay"));
    assert_eq!(find("Job")["spec"]["template"]["spec"]["containers"][0]["args"][0].as_str(), Some("migrate"));
    assert_eq!(find("PodDisruptionBudget")["spec"]["minAvailable"].as_i64(), Some(1));
    // The pod's environment, the example Secret and the ConfigMap's file make valid settings.
    let mut env: HashMap<String, String> =
        container["env"].as_vec().unwrap().iter().map(|e| (scalar(&e["name"]), scalar(&e["value"]))).collect();
    let secret = &load("deploy/kubernetes/secret.example.yaml")[0];
    env.extend(secret["stringData"].as_hash().unwrap().iter().map(|(k, v)| (scalar(k), scalar(v))));
    let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(config.path(), find("ConfigMap")["data"]["relay.toml"].as_str().unwrap()).unwrap();
    env.insert("TANYI_RELAY_CONFIG".into(), config.path().display().to_string());
    let settings = Settings::from_sources(None, env).unwrap_or_else(|e| panic!("{e}"));
    assert!(!settings.admin.token.is_empty());
    assert_eq!(settings.accounts[0].name, "acme");
}
