//! `/status`, `/nodes`, `/reload`.

use axum::Json;
use axum::extract::State;

use super::model::{NodeView, ReloadView, StatusView};
use super::server::{AppState, Failure};

pub(crate) async fn status(State(state): State<AppState>) -> Result<Json<StatusView>, Failure> {
    Ok(Json(state.daemon.status().await?))
}

pub(crate) async fn nodes(State(state): State<AppState>) -> Result<Json<Vec<NodeView>>, Failure> {
    Ok(Json(state.daemon.nodes().await?))
}

pub(crate) async fn reload(State(state): State<AppState>) -> Result<Json<ReloadView>, Failure> {
    Ok(Json(state.daemon.reload().await?))
}
