//! Serving the API: binding, TLS, the routes, and errors as JSON.
//!
//! Without tokens the API answers only on loopback; binding anything else without
//! tokens is refused before the daemon starts. The listener is bound up front so a
//! taken port is a start-up error, not a surprise later.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::ApiTokens;
use super::model::ErrorBody;
use super::{auth, events, fires, jobs, metrics, notifications, openapi, status};
use crate::config::ApiToken;
use crate::daemon::{ControlError, DaemonHandle};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "refusing to serve the API on {0}: it is not a loopback address and no API tokens are configured; add `tokens:` or listen on 127.0.0.1"
    )]
    OpenWithoutTokens(SocketAddr),
    #[error("`listen: {0}` is not an address such as 127.0.0.1:8765")]
    Address(String),
    #[error("failed to listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("failed to load the TLS certificate {cert} or key {key}: {reason}")]
    Tls { cert: PathBuf, key: PathBuf, reason: String },
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) daemon: DaemonHandle,
    pub(crate) tokens: ApiTokens,
}

/// An error answer: a status and a sentence, as `{"error": "..."}`.
pub(crate) struct Failure(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, axum::Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<ControlError> for Failure {
    fn from(err: ControlError) -> Failure {
        let status = match err {
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
            ControlError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
        };
        Failure(status, err.to_string())
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(err: crate::store::StoreError) -> Failure {
        Failure(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
    }
}

pub(crate) fn router(state: AppState) -> Router {
    // Each route is declared once, with its handler's annotation: the document is
    // made from the same list that routes requests.
    let (api, document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(status::status))
        .routes(routes!(status::reload))
        .routes(routes!(status::nodes))
        .routes(routes!(status::whoami))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::run))
        .routes(routes!(jobs::enable))
        .routes(routes!(jobs::disable))
        .routes(routes!(fires::list))
        .routes(routes!(fires::cells))
        .routes(routes!(fires::get))
        .routes(routes!(fires::cancel))
        .routes(routes!(notifications::list))
        .routes(routes!(events::stream))
        .split_for_parts();
    let document = serde_json::to_value(openapi::finish(document)).expect("the OpenAPI document serializes");
    let metrics = Router::new().route("/metrics", get(metrics::serve)).with_state(state.clone());
    let api = api
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::authorize))
        .route("/openapi.json", get(move || std::future::ready(axum::Json(document.clone()))))
        .fallback(|| async { Failure(StatusCode::NOT_FOUND, "no such API endpoint; see /api/v1/openapi.json".into()) })
        .method_not_allowed_fallback(|| async {
            Failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "this endpoint does not take that method; see /api/v1/openapi.json".into(),
            )
        })
        .with_state(state);
    Router::new().nest("/api/v1", api).merge(metrics).merge(crate::web::router())
}

/// The API being served.
pub struct Api {
    pub task: JoinHandle<()>,
    /// The tokens in force; a reload replaces them.
    pub tokens: ApiTokens,
}

/// Binds `address` and serves the API until `shutdown`.
pub async fn serve(
    address: &str,
    tokens: &[ApiToken],
    tls: Option<&(PathBuf, PathBuf)>,
    daemon: DaemonHandle,
    shutdown: CancellationToken,
) -> Result<Api, ApiError> {
    let address: SocketAddr = address.parse().map_err(|_| ApiError::Address(address.to_string()))?;
    if tokens.is_empty() && !address.ip().is_loopback() {
        return Err(ApiError::OpenWithoutTokens(address));
    }
    let listener = std::net::TcpListener::bind(address).map_err(|source| ApiError::Bind { address, source })?;
    listener.set_nonblocking(true).map_err(|source| ApiError::Bind { address, source })?;
    let bound = listener.local_addr().unwrap_or(address);
    let tokens = ApiTokens::new(tokens, bound);
    let app = router(AppState { daemon, tokens: tokens.clone() });
    let task = match tls {
        None => {
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(|source| ApiError::Bind { address, source })?;
            tracing::info!(address = %bound, "API listening (http)");
            tokio::spawn(async move {
                let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
                if let Err(err) = served {
                    tracing::error!("the API stopped: {err}");
                }
            })
        }
        Some((cert, key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            // The same loading as `loom check`'s.
            let config = crate::config::tls::server_config(cert, key)
                .map(|c| axum_server::tls_rustls::RustlsConfig::from_config(std::sync::Arc::new(c)))
                .map_err(|reason| ApiError::Tls { cert: cert.clone(), key: key.clone(), reason })?;
            let server =
                axum_server::from_tcp_rustls(listener, config).map_err(|source| ApiError::Bind { address, source })?;
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                stopper.graceful_shutdown(Some(std::time::Duration::from_secs(2)));
            });
            tracing::info!(address = %bound, "API listening (https)");
            tokio::spawn(async move {
                if let Err(err) = server.handle(handle).serve(app.into_make_service()).await {
                    tracing::error!("the API stopped: {err}");
                }
            })
        }
    };
    Ok(Api { task, tokens })
}
