//! A small client for a running gateway's admin API, used by the commands that change its state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use portcullis_gateway::config;
use portcullis_gateway::server::{self, ADMIN_TOKEN_FILE, LISTENING_FILE};

use crate::environment;

/// Where the gateway is and how to authenticate to it.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Gateway URL (default: from the config's `server.bind`, or the data dir's
    /// `listening.json` when the bind uses port 0).
    #[arg(long)]
    pub server: Option<String>,
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory holding a generated admin token (default: $PORTCULLIS_DATA_DIR, else
    /// ./portcullis-data). `PORTCULLIS_ADMIN_TOKEN` takes precedence.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl ServerArgs {
    /// The gateway's base URL (no trailing slash): `--server`, else the config's `server.bind`
    /// (through `listening.json` when it uses port 0).
    pub fn base_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.server {
            return Ok(url.trim_end_matches('/').to_owned());
        }
        let env = environment();
        let data_dir = server::resolve_data_dir(self.data_dir.as_deref(), &env);
        let source = config::resolve_source(self.config.as_deref(), &env);
        let config = config::load(&source, &env)?;
        default_url(&config.server.bind, &data_dir)
    }
}

/// An authenticated admin client.
#[derive(Debug)]
pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn connect(args: &ServerArgs) -> anyhow::Result<Self> {
        let env = environment();
        let data_dir = server::resolve_data_dir(args.data_dir.as_deref(), &env);
        let base = args.base_url()?;
        let token = match env.get("PORTCULLIS_ADMIN_TOKEN").filter(|t| !t.is_empty()) {
            Some(token) => token.clone(),
            None => read_token(&data_dir.join(ADMIN_TOKEN_FILE))?,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { base, token, http })
    }

    /// Sends a request and returns the JSON answer, or the gateway's error code as the error.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("no gateway answered at {}", self.base))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let json: serde_json::Value = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
        };
        if !status.is_success() {
            let code = json
                .pointer("/error/code")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unknown");
            let message = json
                .pointer("/error/message")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("");
            bail!("the gateway refused ({status}, `{code}`): {message}");
        }
        Ok(json)
    }
}

fn default_url(bind: &str, data_dir: &Path) -> anyhow::Result<String> {
    let addr: std::net::SocketAddr = bind
        .parse()
        .with_context(|| format!("server.bind `{bind}` is not a socket address"))?;
    if addr.port() == 0 {
        let path = data_dir.join(LISTENING_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("the bind uses port 0 and {} is unreadable", path.display())
        })?;
        let listening: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let http = listening
            .get("http")
            .and_then(serde_json::Value::as_str)
            .with_context(|| format!("{} has no `http` address", path.display()))?;
        return Ok(format!("http://{http}"));
    }
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    Ok(format!("http://{host}:{}", addr.port()))
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "no admin token: set PORTCULLIS_ADMIN_TOKEN or pass --data-dir (tried {})",
            path.display()
        )
    })?;
    Ok(text.trim().to_owned())
}
