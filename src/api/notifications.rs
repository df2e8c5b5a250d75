//! `/notifications`: the notification outbox, each notification with its attempts.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use super::model::ErrorBody;
use super::rejection::Query;
use super::server::{AppState, Failure};
use crate::store::NotificationRecord;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only this job's notifications.
    job: Option<String>,
    /// At most this many notifications (default 20, at most 10000).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/notifications", operation_id = "listNotifications", tag = "notifications",
    summary = "Notifications, newest first, each with every delivery attempt", params(ListQuery),
    responses((status = 200, description = "notifications", body = Vec<NotificationRecord>),
              (status = 400, description = "a query value that does not parse", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<NotificationRecord>>, Failure> {
    let limit = query.limit.unwrap_or(20).min(10_000);
    Ok(Json(state.daemon.store.notifications(query.job.as_deref(), limit)?))
}
