//! The REST API: `/api/v1`, JSON, bearer tokens, Server-Sent Events.

mod auth;
mod events;
mod fires;
mod jobs;
mod metrics;
pub mod model;
mod notifications;
mod openapi;
mod rejection;
mod server;
mod status;

pub use auth::ApiTokens;
pub use server::{ApiError, serve};
