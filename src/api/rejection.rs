//! Extractors that answer a bad request the way every other error is answered:
//! `{"error": "..."}` as JSON, with axum's status (400 for a path or query value
//! that does not parse, 400/422 for a body that is not JSON or not of the right
//! shape, 413 for one over the size limit, 415 for one not declared JSON).
//!
//! axum's own extractors answer such requests in `text/plain`; these wrap them and
//! change only the answer's form and wording, never which requests are accepted.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, RawPathParams, Request};
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
        let names: Vec<(String, String)> = match RawPathParams::from_request_parts(parts, state).await {
            Ok(raw) => raw.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            Err(_) => Vec::new(),
        };
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection: PathRejection| Failure(rejection.status(), path_message(&rejection, &names)))
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
            .map_err(|rejection: QueryRejection| {
                Failure(
                    rejection.status(),
                    reword(rejection.body_text(), "Failed to deserialize query string: ", "bad query: "),
                )
            })
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
            .map_err(|rejection: JsonRejection| Failure(rejection.status(), body_message(&rejection)))
    }
}

/// `/fires/abc`: "`abc` is not a valid id: expected a whole number", not serde's
/// words; `names` are the route's parameters with their values, to name the bad one.
fn path_message(rejection: &PathRejection, names: &[(String, String)]) -> String {
    use axum::extract::path::ErrorKind;
    let PathRejection::FailedToDeserializePathParams(error) = rejection else {
        return reword(rejection.body_text(), "Invalid URL: ", "bad path: ");
    };
    let (key, value, expected_type) = match error.kind() {
        ErrorKind::ParseErrorAtKey { key, value, expected_type } => (key.as_str(), value, *expected_type),
        ErrorKind::ParseError { value, expected_type } => {
            let key = names.iter().find(|(_, v)| v == value).map_or("path value", |(k, _)| k.as_str());
            (key, value, *expected_type)
        }
        _ => return reword(rejection.body_text(), "Invalid URL: ", "bad path: "),
    };
    let expected = match expected_type {
        "i64" | "u64" | "i32" | "u32" | "usize" => "a whole number",
        "bool" => "true or false",
        other => other,
    };
    format!("`{value}` is not a valid {key}: expected {expected}")
}

fn body_message(rejection: &JsonRejection) -> String {
    match rejection {
        JsonRejection::JsonDataError(_) => reword(
            rejection.body_text(),
            "Failed to deserialize the JSON body into the target type: ",
            "bad request body: ",
        ),
        JsonRejection::JsonSyntaxError(_) => reword(
            rejection.body_text(),
            "Failed to parse the request body as JSON: ",
            "the request body is not JSON: ",
        ),
        JsonRejection::MissingJsonContentType(_) => {
            "a request body must be JSON, sent with `Content-Type: application/json`".to_string()
        }
        _ => reword(rejection.body_text(), "Failed to buffer the request body: ", "failed to read the request body: "),
    }
}

/// axum's sentence with its opening replaced by ours; else only lowercased, as
/// Loom's messages are fragments.
fn reword(text: String, theirs: &str, ours: &str) -> String {
    match text.strip_prefix(theirs) {
        Some(rest) => format!("{ours}{rest}"),
        None => {
            let mut chars = text.chars();
            chars.next().map(|first| first.to_lowercase().chain(chars).collect()).unwrap_or_default()
        }
    }
}
