//! `/jobs`: list, show, run now, enable, disable.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::model::{ErrorBody, FireDetail, JobView, RunAccepted, RunRequest};
use super::rejection::{Body, Path, Query};
use super::server::{AppState, Failure};

#[utoipa::path(get, path = "/jobs", operation_id = "listJobs", tag = "jobs",
    summary = "Jobs with schedule, next fire, last result, enabled",
    responses((status = 200, description = "jobs", body = Vec<JobView>)))]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Vec<JobView>>, Failure> {
    Ok(Json(state.daemon.jobs().await?))
}

#[utoipa::path(get, path = "/jobs/{name}", operation_id = "getJob", tag = "jobs", summary = "One job",
    params(("name" = String, Path, description = "the job's name")),
    responses((status = 200, description = "job", body = JobView),
              (status = 404, description = "no such job", body = ErrorBody)))]
pub(crate) async fn get(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<JobView>, Failure> {
    view(&state, &name).await.map(Json)
}

async fn view(state: &AppState, name: &str) -> Result<JobView, Failure> {
    let jobs = state.daemon.jobs().await?;
    jobs.into_iter()
        .find(|j| j.name == name)
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no job named `{name}`")))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunQuery {
    /// Answer when the fire has finished, with every node's result.
    #[serde(default)]
    wait: bool,
}

#[utoipa::path(post, path = "/jobs/{name}/run", operation_id = "runJob", tag = "jobs",
    summary = "Run a job now; with ?wait=true answer with every node's result when it has finished",
    params(("name" = String, Path, description = "the job's name"), RunQuery),
    request_body(content = Option<RunRequest>, description = "optional (none, or `null`, runs on all the job's targets): run only on these nodes"),
    responses((status = 200, description = "the finished fire (?wait=true)", body = FireDetail),
              (status = 202, description = "the fire started", body = RunAccepted),
              (status = 400, description = "a malformed body or query, or a node the job does not target", body = ErrorBody),
              (status = 404, description = "no such job", body = ErrorBody),
              (status = 413, description = "a body larger than 2 MiB", body = ErrorBody),
              (status = 415, description = "a body that is not application/json", body = ErrorBody),
              (status = 422, description = "a body of the wrong shape", body = ErrorBody)))]
pub(crate) async fn run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<RunQuery>,
    body: Body<Option<RunRequest>>,
) -> Result<Response, Failure> {
    let request = body.0.flatten().unwrap_or_default();
    // Read from before starting, so the end of a quick fire is not missed.
    let events = state.daemon.events.reader(None);
    let fire = state.daemon.run(name, request.nodes, request.check).await?;
    if !query.wait {
        return Ok((StatusCode::ACCEPTED, Json(RunAccepted { fire })).into_response());
    }
    super::fires::finished(&state, events, fire).await?;
    let detail = super::fires::detail(&state, fire)?;
    Ok(Json(detail).into_response())
}

#[utoipa::path(post, path = "/jobs/{name}/enable", operation_id = "enableJob", tag = "jobs",
    summary = "Enable a job (kept across restarts and reloads)",
    params(("name" = String, Path, description = "the job's name")),
    responses((status = 200, description = "the job", body = JobView),
              (status = 404, description = "no such job", body = ErrorBody)))]
pub(crate) async fn enable(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<JobView>, Failure> {
    set(state, name, true).await
}

#[utoipa::path(post, path = "/jobs/{name}/disable", operation_id = "disableJob", tag = "jobs",
    summary = "Disable a job (kept across restarts and reloads)",
    params(("name" = String, Path, description = "the job's name")),
    responses((status = 200, description = "the job", body = JobView),
              (status = 404, description = "no such job", body = ErrorBody)))]
pub(crate) async fn disable(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<JobView>, Failure> {
    set(state, name, false).await
}

async fn set(state: AppState, name: String, enabled: bool) -> Result<Json<JobView>, Failure> {
    state.daemon.set_enabled(name.clone(), enabled).await?;
    view(&state, &name).await.map(Json)
}
