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
mod man;
mod metrics;
mod next;
mod notifications;
mod openapi;
mod pipes;
mod reload;
mod resources;
mod run;
mod secrets;
mod serve;
mod shell;
mod ssh;
mod stdlib;
mod system_resources;
mod systemd;
mod tokens;
mod web;
mod which_daemon;
mod yaml_suite;
