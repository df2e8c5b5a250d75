//! `/fires`: the history, one fire with its node results and output, cancelling.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::model::{Cancelled, ErrorBody, Event, FireDetail};
use super::rejection::{Path, Query};
use super::server::{AppState, Failure};
use crate::runner::events::{Item, Reader};
use crate::store::{FireFilter, FireRecord, NodeCell};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only this job's fires.
    job: Option<String>,
    /// Only fires that ran on this node.
    node: Option<String>,
    /// Only fires that failed.
    #[serde(default)]
    failed: bool,
    /// Only check-mode fires that found drift.
    #[serde(default)]
    drift: bool,
    /// Only fires numbered below this one: the next page after a page whose last
    /// fire this is.
    before: Option<i64>,
    /// At most this many fires (default 20, at most 10000).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/fires", operation_id = "listFires", tag = "fires", summary = "Fires, newest first", params(ListQuery),
    responses((status = 200, description = "fires", body = Vec<FireRecord>),
              (status = 400, description = "a query value that does not parse", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<FireRecord>>, Failure> {
    let filter = FireFilter {
        job: query.job,
        node: query.node,
        failed_only: query.failed,
        drift_only: query.drift,
        before: query.before,
        limit: query.limit.unwrap_or(20).min(10_000),
    };
    Ok(Json(state.daemon.store.fires(&filter)?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CellsQuery {
    /// Fire numbers separated by commas, at most 1000.
    ids: String,
}

#[utoipa::path(get, path = "/fires/cells", operation_id = "listNodeCells", tag = "fires",
    summary = "Every node's attempts in the given fires, without output: the cells of a history grid",
    params(CellsQuery),
    responses((status = 200, description = "attempts by fire, then in the order recorded", body = Vec<NodeCell>),
              (status = 400, description = "ids that do not parse, or more than 1000", body = ErrorBody)))]
pub(crate) async fn cells(
    State(state): State<AppState>,
    Query(query): Query<CellsQuery>,
) -> Result<Json<Vec<NodeCell>>, Failure> {
    let ids = query
        .ids
        .split(',')
        .filter(|id| !id.trim().is_empty())
        .map(|id| id.trim().parse::<i64>())
        .collect::<Result<Vec<i64>, _>>()
        .map_err(|_| Failure(StatusCode::BAD_REQUEST, format!("`ids={}` is not a list of fire numbers", query.ids)))?;
    if ids.len() > 1000 {
        return Err(Failure(StatusCode::BAD_REQUEST, format!("{} fire numbers asked; at most 1000", ids.len())));
    }
    Ok(Json(state.daemon.store.node_cells(&ids)?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GetQuery {
    /// Answer once the fire has finished.
    #[serde(default)]
    wait: bool,
}

#[utoipa::path(get, path = "/fires/{id}", operation_id = "getFire", tag = "fires",
    summary = "One fire with its node results and output; with ?wait=true answer once it has finished",
    params(("id" = i64, Path, description = "the fire's number"), GetQuery),
    responses((status = 200, description = "fire", body = FireDetail),
              (status = 400, description = "an id or query value that does not parse", body = ErrorBody),
              (status = 404, description = "no such fire", body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(query): Query<GetQuery>,
) -> Result<Json<FireDetail>, Failure> {
    if query.wait {
        finished(&state, state.daemon.events.reader(None), id).await?;
    }
    Ok(Json(detail(&state, id)?))
}

/// Waits until fire `id` is recorded as finished (or is not in the store at all).
/// `events` must have been opened before the fire could finish, so its end is
/// not missed; the store is asked again after every batch of events, so a reader
/// that lagged behind loses nothing, and every second: a cluster fire another
/// member claimed ends with no event here.
pub(crate) async fn finished(state: &AppState, mut events: Reader, id: i64) -> Result<(), Failure> {
    loop {
        if state.daemon.store.fire(id)?.is_none_or(|f| f.finished.is_some()) {
            return Ok(());
        }
        let Ok(items) = tokio::time::timeout(std::time::Duration::from_secs(1), events.next()).await else {
            continue;
        };
        let ended = items.iter().any(|item| {
            matches!(item, Item::Event(_, event) if matches!(**event, Event::FireFinished { fire: Some(fire), .. } if fire == id))
        });
        if ended {
            return Ok(());
        }
    }
}

/// One fire with its node results, as the API shows it.
pub(crate) fn detail(state: &AppState, id: i64) -> Result<FireDetail, Failure> {
    let fire = state.daemon.store.fire(id)?.ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no fire {id}")))?;
    let results = state.daemon.store.node_results(id)?;
    Ok(FireDetail { fire, results })
}

#[utoipa::path(post, path = "/fires/{id}/cancel", operation_id = "cancelFire", tag = "fires",
    summary = "Cancel a running fire: its nodes' commands are stopped and it is recorded `interrupted`",
    params(("id" = i64, Path, description = "the fire's number")),
    responses((status = 200, description = "cancelled", body = Cancelled),
              (status = 400, description = "an id that does not parse", body = ErrorBody),
              (status = 404, description = "no such fire is running", body = ErrorBody)))]
pub(crate) async fn cancel(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<Cancelled>, Failure> {
    state.daemon.cancel(id).await?;
    Ok(Json(Cancelled { fire: id, cancelled: true }))
}
