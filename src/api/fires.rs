//! `/fires`: the history, one fire with its node results and output, cancelling.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::model::FireDetail;
use super::server::{AppState, Failure};
use crate::store::{FireFilter, FireRecord};

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    job: Option<String>,
    node: Option<String>,
    #[serde(default)]
    failed: bool,
    limit: Option<usize>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<FireRecord>>, Failure> {
    let filter = FireFilter {
        job: query.job,
        node: query.node,
        failed_only: query.failed,
        limit: query.limit.unwrap_or(20).min(10_000),
    };
    Ok(Json(state.daemon.store.fires(&filter)?))
}

pub(crate) async fn get(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<FireDetail>, Failure> {
    let fire = state.daemon.store.fire(id)?.ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no fire {id}")))?;
    let results = state.daemon.store.node_results(id)?;
    Ok(Json(FireDetail { fire, results }))
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, Failure> {
    state.daemon.cancel(id).await?;
    Ok(Json(serde_json::json!({ "fire": id, "cancelled": true })))
}
