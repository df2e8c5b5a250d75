//! `/events`: fires starting, output arriving, nodes and fires finishing, as
//! Server-Sent Events, optionally for one job.
//!
//! Each event carries its number as the SSE `id:`. A client that sends
//! `Last-Event-ID: N` first gets the kept events after N, then live ones; events it
//! should have had but that are no longer kept (it was away or read too slowly)
//! are replaced by one `lagged` event saying how many, and the stream goes on.
//! Numbering and keeping happen in the daemon's event log (`runner::events`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt, stream};
use serde::Deserialize;
use utoipa::IntoParams;

use super::model::{ErrorBody, Lagged, StreamData};
use super::rejection::Query;
use super::server::AppState;
use crate::runner::events::Item;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventQuery {
    /// Only this job's events.
    job: Option<String>,
}

#[utoipa::path(get, path = "/events", operation_id = "streamEvents", tag = "events",
    summary = "Live events as Server-Sent Events: fire-started, output, node-finished, fire-finished, lagged",
    description = "Each event's `event:` is its type and its `data:` the JSON of an Event (with the same `type`); each carries its number as `id:`, increasing (also across daemon restarts). The daemon keeps its last 10,000 events (at most 32 MiB of output text). With `Last-Event-ID: N` the stream first sends every kept event after N (filtered by `job`), then live ones; a number the daemon never gave counts as older than all its events. Events the client should have had but that are no longer kept are replaced by one `lagged` event (no `id:`) whose data is a Lagged, and the stream goes on.",
    params(EventQuery, ("Last-Event-ID" = Option<u64>, Header, description = "resume after this event number")),
    responses((status = 200, description = "the event stream; each `data:` is an Event or a Lagged", content_type = "text/event-stream", body = StreamData),
              (status = 400, description = "a query value that does not parse", body = ErrorBody)))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    Query(query): Query<EventQuery>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let after = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let reader = state.daemon.events.reader(after);
    let events = stream::unfold((reader, query.job), |(mut reader, job)| async move {
        let items = reader.next().await;
        let sse: Vec<Result<SseEvent, Infallible>> =
            items.into_iter().filter_map(|item| sse(item, job.as_deref())).map(Ok).collect();
        Some((stream::iter(sse), (reader, job)))
    })
    .flatten();
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// One item as an SSE event, unless it is another job's.
fn sse(item: Item, job: Option<&str>) -> Option<SseEvent> {
    match item {
        Item::Event(id, event) => {
            if job.is_some_and(|job| job != event.job()) {
                return None;
            }
            let data = serde_json::to_string(&*event).ok()?;
            Some(SseEvent::default().id(id.to_string()).event(event.kind()).data(data))
        }
        Item::Lagged(missed) => {
            let data = serde_json::to_string(&Lagged::new(missed)).ok()?;
            Some(SseEvent::default().event("lagged").data(data))
        }
    }
}
