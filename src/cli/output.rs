//! Printing for the CLI that never panics. A closed stdout (`loom logs 9 | head -2`)
//! ends the output quietly — nothing more is written, and commands that follow a
//! stream (`loom tail`) stop — and a closed stderr loses the message, not the
//! process. (`println!` panics on both.)

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Prints `text` on stdout; after the first failure, nothing more.
pub(crate) fn stdout(text: fmt::Arguments<'_>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_fmt(text).and_then(|()| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Prints `text` on stderr, if anyone still reads it.
pub(crate) fn stderr(text: fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(text);
}

/// Whether stdout was found closed: there is no one left to print for.
pub(crate) fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}
