//! The CLI as a client of a running daemon, here or remote.
//!
//! `--server URL` (or `$LOOM_SERVER`) names a daemon explicitly, and commands then
//! go to it. Without it, commands that gain from a daemon (run, status, tail,
//! reload, enable, disable) look for one at the configuration's `listen` address
//! and use it when it answers; the token then defaults to the configuration's own.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::args::Cli;
use crate::api::model::{ErrorBody, Event};
use crate::config::Role;

pub(crate) struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

/// Whether a command needs a daemon or can do without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Required,
    Optional,
}

impl Client {
    pub(crate) fn new(server: &str, token: Option<String>) -> anyhow::Result<Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server = server.trim_end_matches('/');
        let server = if server.contains("://") { server.to_string() } else { format!("http://{server}") };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("failed to set up the HTTP client")?;
        Ok(Client { base: format!("{server}/api/v1"), http, token })
    }

    pub(crate) fn server(&self) -> &str {
        self.base.trim_end_matches("/api/v1")
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let response =
            request.send().await.with_context(|| format!("failed to reach the daemon at {}", self.server()))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<ErrorBody>(&body).map(|e| e.error).unwrap_or(body);
            bail!("the daemon at {} answered {}: {message}", self.server(), status.as_u16());
        }
        response
            .json()
            .await
            .with_context(|| format!("the daemon at {} sent an answer Loom cannot read", self.server()))
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<T> {
        self.send(self.request(reqwest::Method::GET, path).query(query)).await
    }

    pub(crate) async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> anyhow::Result<T> {
        self.send(self.request(reqwest::Method::POST, path).json(body)).await
    }

    /// Whether a Loom daemon answers there (a refusal of our token still counts:
    /// the command then says why; a 404 from something else does not).
    async fn answers(&self) -> bool {
        let probe = self.request(reqwest::Method::GET, "/status").timeout(Duration::from_millis(800)).send();
        match probe.await {
            Ok(response) => {
                let status = response.status();
                status.is_success()
                    || status == reqwest::StatusCode::UNAUTHORIZED
                    || status == reqwest::StatusCode::FORBIDDEN
            }
            Err(_) => false,
        }
    }

    /// Follows the live event stream, handing each event to `each` until it says stop.
    pub(crate) async fn events(&self, job: Option<&str>, mut each: impl FnMut(Event) -> bool) -> anyhow::Result<()> {
        let mut request = self.request(reqwest::Method::GET, "/events");
        if let Some(job) = job {
            request = request.query(&[("job", job)]);
        }
        let response =
            request.send().await.with_context(|| format!("failed to reach the daemon at {}", self.server()))?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<ErrorBody>(&body).map(|e| e.error).unwrap_or(body);
            bail!("the daemon at {} answered {status}: {message}", self.server());
        }
        let mut stream = response.bytes_stream();
        let mut pending = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.context("the event stream broke off")?;
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find("\n\n") {
                let message: String = pending.drain(..end + 2).collect();
                let data: String = message
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect::<Vec<_>>()
                    .join("\n");
                if data.is_empty() {
                    continue;
                }
                if let Ok(event) = serde_json::from_str::<Event>(&data)
                    && !each(event)
                {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// The daemon to talk to: the explicit one, or the configured one if it answers.
pub(crate) async fn connect(cli: &Cli, need: Need) -> anyhow::Result<Option<Client>> {
    let token = explicit_token(cli)?;
    if let Some(server) = &cli.server {
        return Ok(Some(Client::new(server, token)?));
    }
    let found = match cli.config_path() {
        Ok(path) => {
            let (config, _) = crate::config::load(&path);
            let listen = config.settings.listen.clone();
            let token = token.or_else(|| {
                let tokens = &config.settings.tokens;
                let admin = tokens.iter().find(|t| t.role == Role::Admin).or(tokens.first());
                admin.map(|t| t.secret.clone())
            });
            match listen {
                Some(address) => {
                    let scheme = if config.settings.tls.is_some() { "https" } else { "http" };
                    let client = Client::new(&format!("{scheme}://{address}"), token)?;
                    client.answers().await.then_some(client)
                }
                None => None,
            }
        }
        Err(_) => None,
    };
    if found.is_none() && need == Need::Required {
        bail!("no daemon is reachable; start `loom serve`, or name one with --server URL (or $LOOM_SERVER)");
    }
    Ok(found)
}

fn explicit_token(cli: &Cli) -> anyhow::Result<Option<String>> {
    if let Some(token) = &cli.token {
        return Ok(Some(token.clone()));
    }
    match &cli.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("failed to read the token file {}", path.display()))?;
            Ok(Some(text.trim().to_string()))
        }
        None => Ok(None),
    }
}
