//! The relay's real binary as a child process, for what only a process can show: being killed
//! with SIGKILL, restarting on the same port, running as one of several replicas.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RelayProcess {
    child: Option<Child>,
    pub base: String,
    config: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    starts: usize,
}

/// A port nobody listens on right now (the relay binds it itself, so that it can restart on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl RelayProcess {
    /// Writes `config_toml` (plus the listen address) into `dir` and starts `serve` with it; ready
    /// when `/healthz` answers (readiness may wait for a database that is away).
    pub async fn start(dir: &Path, name: &str, config_toml: &str) -> RelayProcess {
        Self::start_with_env(dir, name, config_toml, &[]).await
    }

    pub async fn start_with_env(dir: &Path, name: &str, config_toml: &str, env: &[(&str, &str)]) -> RelayProcess {
        let port = free_port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n{config_toml}"),
        )
        .expect("write config");
        let mut relay = RelayProcess {
            child: None,
            base: format!("http://127.0.0.1:{port}"),
            config,
            log: dir.join(format!("{name}.log")),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            starts: 0,
        };
        relay.restart().await;
        relay
    }

    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart only after a kill");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open the log");
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_tanyi-relay"))
                .arg("serve")
                .env("TANYI_RELAY_CONFIG", &self.config)
                .env("RUST_LOG", "info")
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start the relay"),
        );
        self.starts += 1;
        let client = reqwest::Client::builder().no_proxy().build().expect("a client");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !client.get(format!("{}/healthz", self.base)).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "the relay did not start; its log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown handler runs, in-flight requests and transactions are cut off.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the graceful stop.
    pub async fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "the relay did not stop on SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn callback_url(&self, account: &str) -> String {
        format!("{}/callbacks/{account}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn starts(&self) -> usize {
        self.starts
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
