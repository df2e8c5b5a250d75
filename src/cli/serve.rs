//! `loom serve`: the daemon in the foreground, stopped by SIGINT or SIGTERM.
//!
//! The first signal stops new fires and waits for running ones; a second one
//! cancels the running fires (local commands killed, remote channels closed, nodes
//! and fires recorded `interrupted`, masters stopped) and exits with 130 once that
//! is done; a third exits at once.

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::args::{Cli, Outcome};
use crate::daemon::{self, DaemonError};

pub(crate) async fn execute(cli: &Cli) -> anyhow::Result<Outcome> {
    let path = cli.config_path()?;
    let shutdown = CancellationToken::new();
    let abort = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("failed to listen for SIGINT")?;
    let (stop, stop_now) = (shutdown.clone(), abort.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
        stop.cancel();
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::warn!("second signal: cancelling running fires");
        stop_now.cancel();
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::warn!("third signal: exiting at once");
        std::process::exit(130);
    });
    match daemon::run(path, shutdown, abort.clone()).await {
        Ok(()) if abort.is_cancelled() => Ok(Outcome::Interrupted),
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
