//! Telling systemd how the daemon is doing (`Type=notify`): ready, reloading,
//! stopping, and the watchdog's keep-alive.
//!
//! Through the `sd-notify` crate, which writes datagrams to `$NOTIFY_SOCKET` and does
//! nothing when it is unset (a daemon started by hand). `READY=1` goes once the API
//! listens and every job is planned; `RELOADING=1` (with `MONOTONIC_USEC`, as
//! systemd 253 and later expect) when a reload begins and `READY=1` when its result
//! is in force; `STOPPING=1` when the daemon begins to stop. With `WatchdogSec=` the
//! daemon's loop itself sends `WATCHDOG=1` at half the interval — from an arm of its
//! `select!`, so a loop that hangs stops feeding the watchdog and systemd restarts
//! it. This module decides nothing about the daemon's state.

use std::time::Duration;

use sd_notify::NotifyState;

pub(crate) struct Systemd {
    /// Half of `WATCHDOG_USEC`, when systemd watches this process.
    feed_every: Option<Duration>,
}

impl Systemd {
    pub(crate) fn from_env() -> Systemd {
        Systemd { feed_every: sd_notify::watchdog_enabled().map(|interval| interval / 2) }
    }

    fn notify(states: &[NotifyState<'_>]) {
        if let Err(err) = sd_notify::notify(states) {
            tracing::warn!("failed to notify systemd: {err}");
        }
    }

    pub(crate) fn ready(status: &str) {
        Systemd::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub(crate) fn reloading() {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => Systemd::notify(&[NotifyState::Reloading, now]),
            Err(_) => Systemd::notify(&[NotifyState::Reloading]),
        }
    }

    pub(crate) fn stopping() {
        Systemd::notify(&[NotifyState::Stopping]);
    }

    /// When the watchdog must next be fed, if systemd watches.
    pub(crate) fn next_feed(&self, from: tokio::time::Instant) -> Option<tokio::time::Instant> {
        self.feed_every.map(|every| from + every)
    }

    pub(crate) fn feed(&self) {
        Systemd::notify(&[NotifyState::Watchdog]);
    }
}
