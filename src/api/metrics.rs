//! `GET /metrics`: the daemon's metrics, in OpenMetrics text when the scraper asks
//! for it (Prometheus does) and in the classic Prometheus text format otherwise.
//!
//! Behind the API's tokens (any role may read) unless `metrics: {public: true}`,
//! which a reload may turn on or off. What is counted lives in `crate::metrics`;
//! this only serves it, with the running fires and open SSH masters taken from the
//! daemon's status at the time of the scrape (the figures `loom status` shows).

use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::auth;
use super::server::{AppState, Failure};
use crate::metrics::{OPENMETRICS, PROMETHEUS_TEXT, prometheus_text};

pub(crate) async fn serve(State(state): State<AppState>, request: Request) -> Response {
    let metrics = &state.daemon.metrics;
    if !metrics.is_public()
        && let Err(refused) = auth::check(&state, &request)
    {
        return refused.into_response();
    }
    // Prometheus asks for OpenMetrics; anything else gets the classic text format.
    let wants_openmetrics = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    match state.daemon.status().await {
        Ok(status) => {
            let text = metrics.render(status.running.len(), status.ssh_masters);
            if wants_openmetrics {
                ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
            } else {
                ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], prometheus_text(&text)).into_response()
            }
        }
        Err(err) => Failure::from(err).into_response(),
    }
}
