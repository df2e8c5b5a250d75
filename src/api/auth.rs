//! Bearer tokens: who may read and who may act.
//!
//! Tokens are compared in constant time, against every configured token, so timing
//! tells nothing about how much of a guess was right. With no tokens configured the
//! API is on loopback only (enforced at bind) and open to local users.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::server::{AppState, Failure};
use crate::config::Role;

pub(crate) async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.tokens.is_empty() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return Failure(StatusCode::UNAUTHORIZED, "missing bearer token (Authorization: Bearer …)".into())
            .into_response();
    };
    let mut role = None;
    for token in state.tokens.iter() {
        let same: bool = token.secret.as_bytes().ct_eq(presented.as_bytes()).into();
        if same {
            role = Some(token.role);
        }
    }
    match role {
        None => Failure(StatusCode::UNAUTHORIZED, "invalid token".into()).into_response(),
        Some(Role::Read) if !matches!(*request.method(), Method::GET | Method::HEAD) => Failure(
            StatusCode::FORBIDDEN,
            "this token may only read; running, enabling, disabling, cancelling and reloading need an admin token"
                .into(),
        )
        .into_response(),
        Some(_) => next.run(request).await,
    }
}
