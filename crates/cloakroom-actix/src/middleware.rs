//! The middleware: open a session when a request arrives, commit it when
//! the handler's response is ready, before the head is sent.

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::StatusCode;
use actix_web::http::header::{
    HeaderMap, HeaderName, HeaderValue, InvalidHeaderName, InvalidHeaderValue,
};
use actix_web::{HttpMessage, HttpResponse};
use cloakroom::{
    CommitFuture, EditMode, KeyRing, ResponseHeaders, Session, SessionManager,
    SessionManagerBuilder, Stats, Store,
};
use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// The actix-web middleware that gives each request a [`Session`].
///
/// Build it once and `.wrap(sessions.clone())` in the app factory; clones
/// share the store and the counters.
///
/// The request's changes are written once the response is ready, whatever
/// its status: a handler that returns an error after `set` still has the
/// change written. Only an `Err` from the services inside the middleware
/// (not a handler's error, which actix-web turns into a response) or a
/// panic writes nothing.
///
/// ```
/// use actix_web::{App, web};
/// use cloakroom_actix::{KeyRing, MemoryStore, Session, SessionMiddleware};
///
/// async fn detail(session: Session) -> cloakroom_actix::Result<String> {
///     let login: Option<String> = session.get("login").await?;
///     Ok(format!("detail get ok! {}", login.as_deref().unwrap_or("None")))
/// }
///
/// let sessions = SessionMiddleware::builder(MemoryStore::new(), KeyRing::random()).build()?;
/// let app = App::new()
///     .wrap(sessions)
///     .route("/detail", web::get().to(detail));
/// # Ok::<(), cloakroom::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SessionMiddleware {
    manager: SessionManager,
}

/// Builds a [`SessionMiddleware`]: cloakroom's
/// [`SessionManagerBuilder`] whose `build` gives the middleware, with the
/// same settings as on axum (`cookie`, `header`, `expiry`, `limits`,
/// `clock`).
pub type SessionMiddlewareBuilder = SessionManagerBuilder<SessionMiddleware>;

impl SessionMiddleware {
    /// Starts building a middleware over `store`, signing with `keys`.
    pub fn builder(store: impl Store, keys: KeyRing) -> SessionMiddlewareBuilder {
        SessionManager::builder(store, keys).output()
    }

    /// A middleware over an existing manager, which may also serve a tower
    /// layer: both then share sessions and counters.
    pub fn new(manager: SessionManager) -> Self {
        SessionMiddleware { manager }
    }

    /// The manager the middleware runs on.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }

    /// The middleware's counters.
    pub fn stats(&self) -> Stats {
        self.manager.stats()
    }
}

impl From<SessionManager> for SessionMiddleware {
    fn from(manager: SessionManager) -> Self {
        SessionMiddleware { manager }
    }
}

impl<S, B> Transform<S, ServiceRequest> for SessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = SessionService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SessionService {
            service: Rc::new(service),
            manager: self.manager.clone(),
        }))
    }
}

/// The service made by [`SessionMiddleware`].
pub struct SessionService<S> {
    service: Rc<S>,
    manager: SessionManager,
}

impl<S> fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("manager", &self.manager)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<ServiceRequest> for SessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = ResponseFuture<S::Future, B>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let manager = &self.manager;
        // actix-web has header types of its own (from http 0.2); the token
        // header's values are copied over, and nothing is parsed yet.
        let values = req
            .headers()
            .get_all(manager.token_header().as_str())
            .filter_map(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok());
        let session = manager.open_values(values);
        req.extensions_mut().insert(session.clone());
        ResponseFuture {
            state: State::Inner {
                future: self.service.call(req),
                session: Some((manager.clone(), session)),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`SessionService`] response: the inner service's
    /// response, then, if the handler used its session, the commit to the
    /// store. A request that never touched its session, or only read it,
    /// costs no allocation here.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Inner {
            #[pin]
            future: F,
            session: Option<(SessionManager, Session)>,
        },
        Commit {
            future: CommitFuture,
            manager: SessionManager,
            response: Option<ServiceResponse<B>>,
        },
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
    B: MessageBody + 'static,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { future, session } => {
                    let response = match future.poll(cx) {
                        Poll::Ready(Ok(response)) => response,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    };
                    let Some((manager, session)) = session.take() else {
                        // Only reachable by polling again after Ready.
                        return Poll::Ready(Ok(response.map_into_left_body()));
                    };
                    if !manager.needs_commit(&session) {
                        return Poll::Ready(Ok(response.map_into_left_body()));
                    }
                    this.state.set(State::Commit {
                        future: manager.commit(&session),
                        manager,
                        response: Some(response),
                    });
                }
                StateProj::Commit {
                    future,
                    manager,
                    response,
                } => {
                    let committed = std::task::ready!(Pin::new(future).poll(cx));
                    let Some(mut response) = response.take() else {
                        return Poll::Ready(Err(actix_web::error::ErrorInternalServerError(
                            "session response polled after completion",
                        )));
                    };
                    return Poll::Ready(Ok(match committed {
                        Ok(headers) => {
                            apply(headers, response.headers_mut());
                            response.map_into_left_body()
                        }
                        Err(err) => response
                            .into_response(error_page(manager.commit_error_response(&err)))
                            .map_into_right_body(),
                    }));
                }
            }
        }
    }
}

/// Makes cloakroom's header edits on actix-web's header map.
fn apply(headers: ResponseHeaders, map: &mut HeaderMap) {
    for edit in headers {
        let (Ok(name), Ok(value)) = (actix_name(&edit.name), actix_value(&edit.value)) else {
            // Both sides check names and values by the same rules.
            tracing::error!(header = %edit.name, "session header not representable in actix-web");
            continue;
        };
        match edit.mode {
            EditMode::Append => map.append(name, value),
            EditMode::IfAbsent if map.contains_key(&name) => {}
            _ => {
                map.insert(name, value);
            }
        }
    }
}

/// The names the core sets, without parsing them again.
fn actix_name(name: &http::HeaderName) -> Result<HeaderName, InvalidHeaderName> {
    use actix_web::http::header;
    Ok(match name.as_str() {
        "set-cookie" => header::SET_COOKIE,
        "cache-control" => header::CACHE_CONTROL,
        "vary" => header::VARY,
        "cookie" => header::COOKIE,
        other => return HeaderName::from_bytes(other.as_bytes()),
    })
}

/// The fixed values the core sets, without copying them; other values
/// (a `Set-Cookie` line, a token) are checked and copied.
fn actix_value(value: &http::HeaderValue) -> Result<HeaderValue, InvalidHeaderValue> {
    Ok(match value.as_bytes() {
        b"no-store" => HeaderValue::from_static("no-store"),
        b"private" => HeaderValue::from_static("private"),
        b"cookie" => HeaderValue::from_static("cookie"),
        other => return HeaderValue::from_bytes(other),
    })
}

/// The core's error page as an actix-web response.
fn error_page(page: http::Response<String>) -> HttpResponse<BoxBody> {
    let (parts, body) = page.into_parts();
    let status =
        StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    for (name, value) in &parts.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            response.append_header((name, value));
        }
    }
    response.body(body)
}
