//! Starts the real `portcullis` binary for end-to-end tests and talks to it.

#![allow(dead_code)]

pub mod llm;
pub mod mcp;
pub mod peers;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// The binary under test.
pub fn portcullis() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    // Tests never inherit an operator's settings.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PORTCULLIS_") {
            command.env_remove(key);
        }
    }
    command.env("PORTCULLIS_LOG", "warn");
    command
}

/// A running gateway on loopback port 0 with its own data dir.
pub struct Gateway {
    child: Child,
    data: tempfile::TempDir,
    pub http: String,
    pub proxy: Option<String>,
    pub dns: Option<String>,
    pub admin_token: String,
}

impl Gateway {
    /// Starts `portcullis serve` with `config` (TOML) and waits for its `listening` line.
    pub async fn start(config: &str) -> Self {
        Self::start_with(
            config,
            &[],
            &[
                ("PORTCULLIS_EGRESS_PROXY_BIND", ""),
                ("PORTCULLIS_EGRESS_DNS_BIND", ""),
            ],
        )
        .await
    }

    /// Starts with extra `serve` arguments and environment variables.
    pub async fn start_with(config: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), config, args, envs).await
    }

    /// Stops this gateway (SIGTERM) and starts a new one on the same data dir.
    pub async fn restart(mut self, config: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        assert!(self.terminate().success());
        let data = std::mem::replace(&mut self.data, tempfile::tempdir().unwrap());
        drop(self);
        Self::start_in(data, config, args, envs).await
    }

    /// Starts in `data` (a data dir of an earlier run is kept).
    pub async fn start_in(
        data: tempfile::TempDir,
        config: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let config_path = data.path().join("portcullis.toml");
        std::fs::write(&config_path, config).unwrap();
        let data_dir = data.path().join("data");
        let stderr = std::fs::File::create(data.path().join("stderr.log")).unwrap();
        let mut child = portcullis()
            .args(["serve", "--config"])
            .arg(&config_path)
            .arg("--data-dir")
            .arg(&data_dir)
            .env("PORTCULLIS_SERVER_BIND", "127.0.0.1:0")
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap() == 0 {
                    panic!("portcullis exited before listening");
                }
                if line.contains("\"listening\"") {
                    return line;
                }
            }
        })
        .await
        .unwrap();
        let listening: serde_json::Value = serde_json::from_str(&line).unwrap();
        let addr = |key: &str| match listening[key].as_str() {
            Some(addr) => format!("\"{addr}\""),
            None => "null".to_owned(),
        };
        assert_eq!(
            line.trim(),
            format!(
                "{{\"event\":\"listening\",\"http\":{},\"proxy\":{},\"dns\":{}}}",
                addr("http"),
                addr("proxy"),
                addr("dns")
            ),
            "the listening line has the documented shape"
        );
        let file = std::fs::read_to_string(data_dir.join("listening.json")).unwrap();
        assert_eq!(file.trim(), line.trim());
        let admin_token = std::fs::read_to_string(data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        Self {
            child,
            data,
            http: listening["http"].as_str().unwrap().to_owned(),
            proxy: listening["proxy"].as_str().map(str::to_owned),
            dns: listening["dns"].as_str().map(str::to_owned),
            admin_token,
        }
    }

    /// The gateway's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.path().join("data")
    }

    /// Everything the gateway wrote on stderr so far (its logs).
    pub fn stderr_log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("stderr.log")).unwrap_or_default()
    }

    /// The CLI pointed at this gateway.
    pub fn cli(&self) -> Command {
        let mut command = portcullis();
        command
            .env("PORTCULLIS_ADMIN_TOKEN", &self.admin_token)
            // The bind uses port 0, so the CLI finds the gateway through listening.json.
            .env("PORTCULLIS_DATA_DIR", self.data_dir())
            .env("PORTCULLIS_SERVER_BIND", "127.0.0.1:0");
        command
    }

    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        let response = reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    /// Kills the process with SIGKILL (no shutdown at all) and starts a new one on the same data
    /// dir.
    pub async fn kill_and_restart(
        mut self,
        config: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let data = std::mem::replace(&mut self.data, tempfile::tempdir().unwrap());
        drop(self);
        Self::start_in(data, config, args, envs).await
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `promtool`, installed by `scripts/install-test-deps`.
pub fn promtool() -> PathBuf {
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let candidate = dir.join("promtool");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "promtool is not installed; run `bash scripts/install-test-deps` (Debian package `prometheus`)"
    );
}

pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Tampering needs the append-only triggers out of the way first, as an attacker would do.
pub fn drop_ledger_triggers(conn: &rusqlite::Connection) {
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS ledger_no_update; DROP TRIGGER IF EXISTS ledger_no_delete;",
    )
    .unwrap();
}

/// Creates a run-time agent through the admin API; returns its token.
pub async fn create_agent(gateway: &Gateway, id: &str, allow: &[&str]) -> String {
    let response = reqwest::Client::new()
        .post(gateway.url("/admin/agents"))
        .bearer_auth(&gateway.admin_token)
        .json(&serde_json::json!({"id": id, "allow": allow}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}
