//! Bearer tokens: who may read and who may act.
//!
//! Tokens are compared in constant time, against every configured token, so timing
//! tells nothing about how much of a guess was right. With no tokens configured the
//! API is on loopback only (enforced at bind and at reload) and open to local users.
//! A reload replaces the set in force: the next request is checked against the new
//! one, so a revoked token stops working without a restart.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::server::{ApiError, AppState, Failure};
use crate::config::{ApiToken, Role};

/// The tokens in force, shared by the API and the daemon that replaces them.
#[derive(Clone)]
pub struct ApiTokens {
    tokens: Arc<RwLock<Arc<Vec<ApiToken>>>>,
    /// Where the API listens: without tokens it must be loopback.
    address: SocketAddr,
}

impl ApiTokens {
    pub(crate) fn new(tokens: &[ApiToken], address: SocketAddr) -> ApiTokens {
        ApiTokens { tokens: Arc::new(RwLock::new(Arc::new(tokens.to_vec()))), address }
    }

    fn current(&self) -> Arc<Vec<ApiToken>> {
        Arc::clone(&self.tokens.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts `tokens` in force for every request from now on; `false` when they were
    /// in force already. Refused, the current ones staying, when that would leave an
    /// API on a non-loopback address without tokens.
    pub fn replace(&self, tokens: &[ApiToken]) -> Result<bool, ApiError> {
        if tokens.is_empty() && !self.address.ip().is_loopback() {
            return Err(ApiError::OpenWithoutTokens(self.address));
        }
        let mut current = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        if current.as_slice() == tokens {
            return Ok(false);
        }
        *current = Arc::new(tokens.to_vec());
        Ok(true)
    }
}

pub(crate) async fn authorize(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    match check(&state, &request) {
        Ok(role) => {
            // The handlers that care (`/whoami`) read the role; none means no tokens.
            if let Some(role) = role {
                request.extensions_mut().insert(role);
            }
            next.run(request).await
        }
        Err(refused) => refused.into_response(),
    }
}

/// The role of the token `request` carries, if it may do what it asks (`None`, and
/// any request allowed, when no tokens are configured); the refusal to answer if not.
pub(crate) fn check(state: &AppState, request: &Request) -> Result<Option<Role>, Failure> {
    let tokens = state.tokens.current();
    if tokens.is_empty() {
        return Ok(None);
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return Err(Failure(StatusCode::UNAUTHORIZED, "missing bearer token (Authorization: Bearer …)".into()));
    };
    let mut role = None;
    for token in tokens.iter() {
        let same: bool = token.secret.as_bytes().ct_eq(presented.as_bytes()).into();
        if same {
            role = Some(token.role);
        }
    }
    match role {
        None => Err(Failure(StatusCode::UNAUTHORIZED, "invalid token".into())),
        Some(Role::Read) if !matches!(*request.method(), Method::GET | Method::HEAD) => Err(Failure(
            StatusCode::FORBIDDEN,
            "this token may only read; running, enabling, disabling, cancelling and reloading need an admin token"
                .into(),
        )),
        Some(role) => Ok(Some(role)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(secret: &str) -> ApiToken {
        ApiToken { secret: secret.to_string(), role: Role::Read, file: None }
    }

    #[test]
    fn tokens_are_replaced_but_never_all_removed_beyond_loopback() {
        let open = ApiTokens::new(&[token("a")], "0.0.0.0:8765".parse().unwrap());
        assert!(open.replace(&[token("b")]).unwrap());
        assert!(!open.replace(&[token("b")]).unwrap(), "the same set is no change");
        assert!(matches!(open.replace(&[]), Err(ApiError::OpenWithoutTokens(_))));
        assert_eq!(open.current()[0].secret, "b");
        let local = ApiTokens::new(&[token("a")], "127.0.0.1:8765".parse().unwrap());
        assert!(local.replace(&[]).unwrap());
        assert!(local.current().is_empty());
    }
}
