//! Integration tests: the real `loom` binary against real configurations (and, for
//! SSH, real sshd processes on loopback), checking exit codes, output and effects.

mod harness;

mod api;
mod check;
mod check_all;
mod cli_json;
mod cluster;
mod config_limits;
mod events;
mod history;
mod lifecycle;
mod limits;
mod next;
mod openapi;
mod pipes;
mod reload;
mod run;
mod secrets;
mod serve;
mod ssh;
mod stdlib;
mod tokens;
mod which_daemon;
mod yaml_suite;
