//! The CLI as a client of a running daemon, here or remote.
//!
//! `--server URL` (or `$LOOM_SERVER`) names a daemon explicitly, and commands then
//! go to it, whatever configuration it serves. Without it, commands that gain from a
//! daemon (run, status, tail, reload, enable, disable) look for one at the
//! configuration's `listen` address and use it when it answers and serves this very
//! configuration file; the token then defaults to the configuration's own. A daemon
//! of another configuration there is an error, never a reason to act locally: that
//! would hide two configurations sharing one address.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::args::Cli;
use crate::api::model::{ErrorBody, Event, Lagged, StatusView};
use crate::config::{FindError, Role};

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

    /// Who answers there: a Loom daemon (and which configuration it serves), one
    /// that refuses our token, or nothing (a 404 from something else counts as nothing).
    async fn probe(&self) -> Probe {
        let probe = self.request(reqwest::Method::GET, "/status").timeout(Duration::from_millis(800)).send();
        let Ok(response) = probe.await else { return Probe::Nothing };
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<ErrorBody>(&body).map(|e| e.error).unwrap_or(body);
            return Probe::Refused(format!("{}: {message}", status.as_u16()));
        }
        if !status.is_success() {
            return Probe::Nothing;
        }
        match response.json::<StatusView>().await {
            Ok(view) => Probe::Serves(view.config),
            Err(_) => Probe::Unreadable,
        }
    }

    /// Follows the live event stream, handing each item to `each` until it says stop.
    ///
    /// When the stream breaks after it has been open (the daemon restarted, the
    /// network dropped), this reconnects with a short backoff and sends the last
    /// event id seen as `Last-Event-ID`, so the daemon sends what was missed, or says
    /// how much it no longer has. Only a refusal (a token, a wrong address) ends it.
    pub(crate) async fn events(&self, job: Option<&str>, mut each: impl FnMut(Streamed) -> bool) -> anyhow::Result<()> {
        let mut last: Option<String> = None;
        let mut connected_once = false;
        let mut reconnecting = false;
        let mut delay = RETRY_FIRST;
        loop {
            let reason = match self.open_events(job, last.as_deref()).await {
                Err(Opening::Refused(err)) => return Err(err),
                Err(Opening::Unreachable(err)) if !connected_once => return Err(err),
                Err(Opening::Unreachable(err)) => format!("{err:#}"),
                Ok(response) => {
                    let again = std::mem::replace(&mut connected_once, true);
                    delay = RETRY_FIRST;
                    reconnecting = false;
                    if !each(Streamed::Connected { again }) {
                        return Ok(());
                    }
                    let mut stream = response.bytes_stream().eventsource();
                    loop {
                        let message = match stream.next().await {
                            None => break "the daemon closed the event stream".to_string(),
                            Some(Err(err)) => break format!("the event stream broke off: {err}"),
                            Some(Ok(message)) => message,
                        };
                        if !message.id.is_empty() {
                            last = Some(message.id.clone());
                        }
                        let item = match message.event.as_str() {
                            "lagged" => {
                                serde_json::from_str::<Lagged>(&message.data).ok().map(|l| Streamed::Lagged(l.missed))
                            }
                            _ => serde_json::from_str::<Event>(&message.data).ok().map(Streamed::Event),
                        };
                        if let Some(item) = item
                            && !each(item)
                        {
                            return Ok(());
                        }
                    }
                }
            };
            if !reconnecting {
                reconnecting = true;
                if !each(Streamed::Reconnecting(reason)) {
                    return Ok(());
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
        }
    }

    async fn open_events(&self, job: Option<&str>, last: Option<&str>) -> Result<reqwest::Response, Opening> {
        let mut request = self.request(reqwest::Method::GET, "/events");
        if let Some(job) = job {
            request = request.query(&[("job", job)]);
        }
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last);
        }
        let response = request.send().await.map_err(|err| {
            Opening::Unreachable(
                anyhow::Error::new(err).context(format!("failed to reach the daemon at {}", self.server())),
            )
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&body).map(|e| e.error).unwrap_or(body);
        let err = anyhow::anyhow!("the daemon at {} answered {}: {message}", self.server(), status.as_u16());
        // A daemon that is starting or stopping may answer 5xx for a moment.
        Err(if status.is_server_error() { Opening::Unreachable(err) } else { Opening::Refused(err) })
    }
}

/// What following the event stream brings.
pub(crate) enum Streamed {
    Event(Event),
    /// This many events were missed: the daemon no longer had them.
    Lagged(u64),
    /// The stream is open (`again` after `Reconnecting`): from here on nothing is
    /// missed silently.
    Connected {
        again: bool,
    },
    /// The stream broke off (why); reconnecting until the daemon answers again.
    Reconnecting(String),
}

enum Probe {
    Nothing,
    /// A Loom daemon serving this configuration file (as its host names it).
    Serves(String),
    /// Something answered `/status` with text that is not Loom's.
    Unreadable,
    /// The daemon refused our token (status code and reason).
    Refused(String),
}

enum Opening {
    /// The daemon said no (a token, a wrong address): trying again will not help.
    Refused(anyhow::Error),
    /// Nothing answered, or not yet properly.
    Unreachable(anyhow::Error),
}

/// The backoff between attempts to reconnect to the event stream.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// The daemon to talk to: the explicit one, or the configured one if it answers and
/// serves this configuration.
pub(crate) async fn connect(cli: &Cli, need: Need) -> anyhow::Result<Option<Client>> {
    let token = explicit_token(cli)?;
    let path = match crate::config::find(cli.config.as_deref()) {
        Ok(path) => Some(path),
        // Nothing named and nothing found: no address to look at.
        Err(FindError::NotFound(_)) => None,
        Err(err @ FindError::Missing(_)) => return Err(err.into()),
    };
    // The user named the daemon: no comparison of paths, which are the remote host's.
    if let Some(server) = &cli.server {
        return Ok(Some(Client::new(server, token)?));
    }
    let found = match path {
        Some(path) => configured(&path, token).await?,
        None => None,
    };
    if found.is_none() && need == Need::Required {
        bail!("no daemon is reachable; start `loom serve`, or name one with --server URL (or $LOOM_SERVER)");
    }
    Ok(found)
}

/// The daemon at the `listen` address of the configuration at `path`, if one answers;
/// an error if it serves another configuration or cannot be asked which.
async fn configured(path: &Path, token: Option<String>) -> anyhow::Result<Option<Client>> {
    let (config, _) = crate::config::load(path);
    let Some(address) = config.settings.listen.clone() else { return Ok(None) };
    let token = token.or_else(|| {
        let tokens = &config.settings.tokens;
        let admin = tokens.iter().find(|t| t.role == Role::Admin).or(tokens.first());
        admin.map(|t| t.secret.clone())
    });
    let scheme = if config.settings.tls.is_some() { "https" } else { "http" };
    let client = Client::new(&format!("{scheme}://{address}"), token)?;
    let ours = std::fs::canonicalize(path).with_context(|| format!("failed to resolve the path {}", path.display()))?;
    let advice = "give this configuration its own `listen` address, or stop that daemon";
    match client.probe().await {
        Probe::Nothing => Ok(None),
        Probe::Serves(theirs) if Path::new(&theirs) == ours => Ok(Some(client)),
        Probe::Serves(theirs) => {
            bail!("the daemon at {} serves {theirs}, not {}; {advice}", client.server(), ours.display())
        }
        Probe::Unreadable => bail!(
            "something at {} (the `listen` address of {}) answers, but not as a Loom daemon; {advice}",
            client.server(),
            ours.display()
        ),
        Probe::Refused(reason) => bail!(
            "the daemon at {} refused the token ({reason}), so Loom cannot tell whether it serves {}; \
             give its token with --token, or give this configuration its own `listen` address",
            client.server(),
            ours.display()
        ),
    }
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
