//! `loom` as OpenSSH's askpass helper, so a node's password reaches ssh without
//! ever being on a command line or in an environment variable.
//!
//! When Loom starts a master for a node with a password, it writes the password to
//! a 0600 file inside the master's private 0700 folder, and runs ssh with
//! `SSH_ASKPASS=<this binary>`, `SSH_ASKPASS_REQUIRE=force` and `LOOM_ASKPASS_FILE`
//! naming the file. ssh then runs this binary with the prompt as its argument; it
//! prints the password. The file is removed as soon as the master is up (or failed).

use std::io::Write;
use std::path::Path;

pub(crate) const FILE_VAR: &str = "LOOM_ASKPASS_FILE";

/// Answers ssh's prompt when this process was started as the askpass helper.
/// Returns `None` when it was not, and the binary goes on as `loom`.
pub fn answer_if_asked() -> Option<std::process::ExitCode> {
    let file = std::env::var_os(FILE_VAR)?;
    let prompt = std::env::args().nth(1).unwrap_or_default();
    // Never confirm anything (an unknown host key, for one) on the operator's behalf.
    if prompt.contains("(yes/no") {
        println!("no");
        return Some(std::process::ExitCode::SUCCESS);
    }
    match std::fs::read(Path::new(&file)) {
        Ok(password) => {
            let mut out = std::io::stdout();
            let _ = out.write_all(&password);
            let _ = out.write_all(b"\n");
            Some(std::process::ExitCode::SUCCESS)
        }
        Err(_) => Some(std::process::ExitCode::FAILURE),
    }
}
