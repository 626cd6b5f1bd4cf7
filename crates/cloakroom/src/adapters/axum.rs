//! The axum adapter: extractors for [`Session`] and [`Notifications`],
//! and `IntoResponse` for [`Error`]. Requests get their session from
//! [`SessionLayer`](crate::SessionLayer).

use crate::error::Error;
use crate::session::{Notifications, Session};
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

/// The rejection when a handler asks for a session on a route without a
/// [`SessionLayer`](crate::SessionLayer): a programming error, answered
/// with `500`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no session: the SessionLayer is not installed on this route")]
pub struct MissingSessionLayer;

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        tracing::error!("{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, "session layer missing\n").into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(MissingSessionLayer)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Notifications {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Session::from_request_parts(parts, state)
            .await
            .map(|s| s.notifications())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, body) = self.status_and_body();
        self.log_returned();
        (status, body).into_response()
    }
}
