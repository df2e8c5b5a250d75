//! `/status`, `/nodes`, `/reload`, `/whoami`.

use axum::Json;
use axum::extract::State;

use super::model::{NodeView, ReloadView, StatusView, WhoAmI};
use super::server::{AppState, Failure};
use crate::config::Role;

#[utoipa::path(get, path = "/status", operation_id = "getStatus", tag = "daemon",
    summary = "Daemon status: uptime, running and next fires, errors of a failed reload, settings waiting for a restart, the cluster's members and which of them runs which node",
    responses((status = 200, description = "status", body = StatusView)))]
pub(crate) async fn status(State(state): State<AppState>) -> Result<Json<StatusView>, Failure> {
    let mut view: StatusView = state.daemon.status().await?.into();
    let store = std::sync::Arc::clone(&state.daemon.store);
    (view.cluster, view.work) =
        tokio::task::spawn_blocking(move || Ok::<_, crate::store::StoreError>((store.members()?, store.node_work()?)))
            .await
            .map_err(|err| Failure(axum::http::StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))??;
    crate::daemon::consistency::annotate(&mut view.cluster);
    Ok(Json(view))
}

#[utoipa::path(get, path = "/nodes", operation_id = "listNodes", tag = "daemon", summary = "Configured nodes (never their secrets)",
    responses((status = 200, description = "nodes", body = Vec<NodeView>)))]
pub(crate) async fn nodes(State(state): State<AppState>) -> Result<Json<Vec<NodeView>>, Failure> {
    let nodes = state.daemon.nodes().await?;
    // Read here, off the daemon's loop.
    let mut last = state.daemon.store.last_cells()?;
    let views: Vec<NodeView> = nodes
        .iter()
        .map(|(node, master)| {
            let mut view = NodeView::from(node.as_ref());
            view.master = master.clone();
            view.last = last.remove(&node.name);
            view
        })
        .collect();
    Ok(Json(views))
}

#[utoipa::path(get, path = "/whoami", operation_id = "whoAmI", tag = "daemon",
    summary = "What the presented token may do: `admin` (also when no tokens are configured) or `read`",
    responses((status = 200, description = "the token's role", body = WhoAmI)))]
pub(crate) async fn whoami(role: Option<axum::Extension<Role>>) -> Json<WhoAmI> {
    let role = match role.map(|r| r.0) {
        Some(Role::Read) => "read",
        _ => "admin",
    };
    Json(WhoAmI { role: role.to_string() })
}

#[utoipa::path(post, path = "/reload", operation_id = "reload", tag = "daemon",
    summary = "Reload the configuration now; token changes apply from here on, listen/tls/state/retention changes wait for a restart (see Status.restart_pending)",
    responses((status = 200, description = "the outcome; `ok: false` with `errors` when the configuration on disk is invalid (the one in force stays)", body = ReloadView)))]
pub(crate) async fn reload(State(state): State<AppState>) -> Result<Json<ReloadView>, Failure> {
    Ok(Json(state.daemon.reload().await?.into()))
}
