//! Ctrl-C and SIGTERM for commands that do work: the first asks the work to stop
//! and be recorded (local commands killed, remote channels closed, nodes and fire
//! recorded `interrupted`); a second one exits at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled by the first SIGINT or SIGTERM; `what` is said on stderr when
/// it is. The process exits with 130 on the second signal.
pub(crate) fn on_signal(what: &'static str) -> anyhow::Result<CancellationToken> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        errln!("interrupted: {what} (a second Ctrl-C exits at once)");
        cancel.cancel();
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        std::process::exit(130);
    });
    Ok(token)
}
