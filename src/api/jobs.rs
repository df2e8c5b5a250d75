//! `/jobs`: list, show, run now, enable, disable.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::model::{JobView, RunRequest};
use super::server::{AppState, Failure};

pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Vec<JobView>>, Failure> {
    Ok(Json(state.daemon.jobs().await?))
}

pub(crate) async fn get(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<JobView>, Failure> {
    let jobs = state.daemon.jobs().await?;
    jobs.into_iter()
        .find(|j| j.name == name)
        .map(Json)
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no job named `{name}`")))
}

#[derive(Debug, Deserialize)]
pub(crate) struct RunQuery {
    /// Answer when the fire has finished, with every node's result.
    #[serde(default)]
    wait: bool,
}

pub(crate) async fn run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<RunQuery>,
    body: Option<Json<RunRequest>>,
) -> Result<(StatusCode, Json<serde_json::Value>), Failure> {
    let request = body.map(|Json(b)| b).unwrap_or_default();
    // Read from before starting, so the end of a quick fire is not missed.
    let events = state.daemon.events.reader(None);
    let fire = state.daemon.run(name, request.nodes).await?;
    if !query.wait {
        return Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "fire": fire }))));
    }
    super::fires::finished(&state, events, fire).await?;
    let detail = super::fires::detail(&state, fire)?;
    Ok((StatusCode::OK, Json(serde_json::to_value(detail).expect("fires serialize"))))
}

pub(crate) async fn enable(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<JobView>, Failure> {
    set(state, name, true).await
}

pub(crate) async fn disable(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<JobView>, Failure> {
    set(state, name, false).await
}

async fn set(state: AppState, name: String, enabled: bool) -> Result<Json<JobView>, Failure> {
    state.daemon.set_enabled(name.clone(), enabled).await?;
    get(State(state), Path(name)).await
}
