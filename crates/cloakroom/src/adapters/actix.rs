//! The actix-web glue that must live beside the types it is for: the
//! [`Session`] and [`Notifications`] extractors, and `ResponseError` for
//! [`Error`]. The middleware that opens and commits sessions is in the
//! `cloakroom-actix` crate.

use crate::error::Error;
use crate::session::{Notifications, Session};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use std::future::{Ready, ready};

/// The rejection when a handler asks for a session on a route without the
/// session middleware: a programming error, answered with `500`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no session: the session middleware is not installed on this route")]
pub struct MissingSessionMiddleware;

impl ResponseError for MissingSessionMiddleware {
    fn status_code(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> HttpResponse {
        tracing::error!("{self}");
        text_response(self.status_code(), "session middleware missing\n")
    }
}

impl Session {
    /// The request's session, put there by the middleware.
    fn in_request(req: &HttpRequest) -> Result<Session, MissingSessionMiddleware> {
        req.extensions()
            .get::<Session>()
            .cloned()
            .ok_or(MissingSessionMiddleware)
    }
}

impl FromRequest for Session {
    type Error = MissingSessionMiddleware;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Session::in_request(req))
    }
}

impl FromRequest for Notifications {
    type Error = MissingSessionMiddleware;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Session::in_request(req).map(|s| s.notifications()))
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        let (status, _) = self.status_and_body();
        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let (_, body) = self.status_and_body();
        self.log_returned();
        text_response(self.status_code(), body)
    }
}

fn text_response(status: StatusCode, body: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ))
        .body(body)
}
