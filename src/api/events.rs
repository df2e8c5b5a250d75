//! `/events`: fires starting, output arriving, nodes and fires finishing, as
//! Server-Sent Events, optionally for one job.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::server::AppState;

#[derive(Debug, Deserialize)]
pub(crate) struct EventQuery {
    job: Option<String>,
}

pub(crate) async fn stream(
    State(state): State<AppState>,
    Query(query): Query<EventQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let events = BroadcastStream::new(state.daemon.events.subscribe()).filter_map(move |event| {
        // A slow reader that lagged behind just misses events.
        let event = event.ok()?;
        if query.job.as_deref().is_some_and(|job| job != event.job()) {
            return None;
        }
        let data = serde_json::to_string(&event).ok()?;
        Some(Ok(SseEvent::default().event(event.kind()).data(data)))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
