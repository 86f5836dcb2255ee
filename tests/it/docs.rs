//! The documentation's examples work as written: every TOML example loads as a configuration file
//! (the secrets it names set in the environment or written to the files it names).

use std::collections::HashMap;
use std::path::PathBuf;

use tanyi_relay::config::Settings;

fn pages() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension() == Some("md".as_ref()))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

fn toml_examples(text: &str) -> Vec<String> {
    let mut examples = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```toml" {
            examples.push(lines.by_ref().take_while(|l| l.trim() != "```").collect::<Vec<_>>().join("\n"));
        }
    }
    examples
}

/// A value every kind of secret accepts: long enough for a key, and a valid signing secret.
const SECRET: &str = "whsec_aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=";

#[test]
fn every_toml_example_in_the_documentation_loads() {
    let mut checked = 0;
    for page in pages() {
        for example in toml_examples(&std::fs::read_to_string(&page).unwrap()) {
            let dir = tempfile::tempdir().unwrap();
            let mut env = HashMap::new();
            for name in example.split("env = \"").skip(1).filter_map(|rest| rest.split('"').next()) {
                env.insert(name.to_owned(), SECRET.to_owned());
            }
            let mut config = example.clone();
            for path in example.split("file = \"").skip(1).filter_map(|rest| rest.split('"').next()) {
                let local = dir.path().join(path.trim_start_matches('/').replace('/', "_"));
                std::fs::write(&local, SECRET).unwrap();
                config = config.replace(path, &local.display().to_string());
            }
            let file = dir.path().join("example.toml");
            std::fs::write(&file, &config).unwrap();
            if let Err(e) = Settings::from_sources(Some(&file), env) {
                panic!("{}: an example does not load: {e}\n{example}", page.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} examples found");
}
