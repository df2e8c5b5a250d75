//! `loom serve`: the daemon in the foreground, stopped by SIGINT or SIGTERM.
//!
//! The first signal stops new fires and waits for running ones; a second signal
//! exits at once.

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::args::{Cli, Outcome};
use crate::daemon::{self, DaemonError};

pub(crate) async fn execute(cli: &Cli) -> anyhow::Result<Outcome> {
    let path = cli.config_path()?;
    let shutdown = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("failed to listen for SIGINT")?;
    let token = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
        token.cancel();
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::warn!("second signal: exiting without waiting for running fires");
        std::process::exit(130);
    });
    match daemon::run(path, shutdown).await {
        Ok(()) => Ok(Outcome::Success),
        Err(DaemonError::InvalidConfig(diagnostics)) => {
            for diagnostic in &diagnostics {
                errln!("{diagnostic}");
            }
            Err(DaemonError::InvalidConfig(diagnostics).into())
        }
        Err(err) => Err(err.into()),
    }
}
