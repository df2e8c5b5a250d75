//! Extractors that answer a bad request the way every other error is answered:
//! `{"error": "..."}` as JSON, with axum's status (400 for a path or query value
//! that does not parse, 400/422 for a body that is not JSON or not of the right
//! shape, 415 for a body that is not declared JSON).
//!
//! axum's own extractors answer such requests in `text/plain`; these wrap them and
//! change only the body's form, never which requests are accepted.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::server::Failure;

/// A path parameter, e.g. `/fires/{id}`.
pub(crate) struct Path<T>(pub(crate) T);

/// The query string, e.g. `?wait=true`.
pub(crate) struct Query<T>(pub(crate) T);

/// An optional JSON body: `None` when the request has no `Content-Type`.
pub(crate) struct Body<T>(pub(crate) Option<T>);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection: PathRejection| Failure(rejection.status(), rejection.body_text()))
    }
}

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection: QueryRejection| Failure(rejection.status(), rejection.body_text()))
    }
}

impl<T, S> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Failure;

    async fn from_request(request: Request, state: &S) -> Result<Self, Failure> {
        <axum::Json<T> as OptionalFromRequest<S>>::from_request(request, state)
            .await
            .map(|body| Body(body.map(|axum::Json(value)| value)))
            .map_err(|rejection: JsonRejection| Failure(rejection.status(), rejection.body_text()))
    }
}
