//! The providers of `[llm]`: an HTTP client and key each, the call (a whole JSON answer, or the
//! opening of a stream) within the provider's timeouts, and why a call failed.

use std::time::Duration;

use futures::StreamExt as _;
use portcullis_core::ErrorCode;
use serde_json::Value;

use super::{LlmError, LlmStartError};
use crate::config::llm::ProviderConfig;
use crate::secrets::Secrets;

/// One provider, ready to call.
pub(super) struct Provider {
    pub name: String,
    base_url: String,
    key: Option<String>,
    pub models: Vec<String>,
    client: reqwest::Client,
    timeout: Duration,
    pub idle_timeout: Duration,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("key", &self.key.as_ref().map(|_| "<secret>"))
            .finish_non_exhaustive()
    }
}

/// Where a model name leads: the provider and the provider's model name.
#[derive(Clone, Debug)]
pub(super) struct Target<'a> {
    pub provider: &'a Provider,
    pub model: String,
}

/// Why a provider call did not produce an answer.
#[derive(Debug)]
pub(super) enum Failure {
    Timeout,
    Unreachable,
    Status(u16),
    Invalid,
}

impl Failure {
    /// The reason recorded.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Timeout => "llm_upstream_timeout",
            Failure::Unreachable => "llm_upstream_unreachable",
            Failure::Status(_) => "llm_upstream_status",
            Failure::Invalid => "llm_upstream_invalid",
        }
    }

    /// The answer: a provider's error status passes through with the fixed message.
    pub fn error(&self) -> LlmError {
        match self {
            Failure::Timeout => LlmError::new(ErrorCode::UpstreamTimeout),
            Failure::Unreachable | Failure::Invalid => LlmError::new(ErrorCode::UpstreamFailed),
            Failure::Status(status) => LlmError::upstream_status(*status),
        }
    }
}

impl Provider {
    pub fn build(config: &ProviderConfig, secrets: &Secrets) -> Result<Self, LlmStartError> {
        let key = match &config.api_key_secret {
            Some(name) => Some(
                secrets
                    .require(name)
                    .map_err(|source| LlmStartError::Secret {
                        provider: config.name.clone(),
                        source,
                    })?
                    .expose()
                    .to_owned(),
            ),
            None => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout.as_std())
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|_| LlmStartError::Client {
                provider: config.name.clone(),
            })?;
        Ok(Self {
            name: config.name.clone(),
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            key,
            models: config.models.clone(),
            client,
            timeout: config.timeout.as_std(),
            idle_timeout: config.idle_timeout.as_std(),
        })
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        let request = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Sends `body` and reads the whole JSON answer (at most `max_bytes`) within the timeout.
    pub async fn fetch_json(
        &self,
        path: &str,
        body: &Value,
        max_bytes: usize,
    ) -> Result<Value, Failure> {
        let exchange = async {
            let response = self
                .post(path, body)
                .send()
                .await
                .map_err(|_| Failure::Unreachable)?;
            let status = response.status();
            if !status.is_success() {
                return Err(Failure::Status(status.as_u16()));
            }
            let mut bytes = Vec::new();
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|_| Failure::Unreachable)?;
                if bytes.len() + chunk.len() > max_bytes {
                    return Err(Failure::Invalid);
                }
                bytes.extend_from_slice(&chunk);
            }
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .filter(Value::is_object)
                .ok_or(Failure::Invalid)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Sends `body` and waits for the stream's status within the timeout; its events are read
    /// later, each within `idle_timeout`.
    pub async fn open_stream(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<reqwest::Response, Failure> {
        match tokio::time::timeout(self.timeout, self.post(path, body).send()).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(_)) => Err(Failure::Unreachable),
            Ok(Ok(response)) if !response.status().is_success() => {
                Err(Failure::Status(response.status().as_u16()))
            }
            Ok(Ok(response)) => Ok(response),
        }
    }
}
