//! The tower adapter: [`SessionLayer`] opens a [`Session`] per request
//! through a [`SessionManager`], and commits it before the response head
//! leaves.

use crate::manager::{CommitFuture, SessionManager, SessionManagerBuilder, Stats};
use crate::session::Session;
use crate::{KeyRing, Store};
use http::{Request, Response};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// The tower layer that gives each request a [`Session`].
///
/// The request's changes are written once the inner service's response is
/// ready, whatever its status: a handler that fails after `set` still has
/// the change written. A panic in the handler writes nothing.
///
/// ```
/// use axum::{Router, routing::get};
/// use cloakroom::{KeyRing, MemoryStore, Session, SessionLayer};
///
/// async fn handler(session: Session) -> cloakroom::Result<&'static str> {
///     session.set("seen", true).await?;
///     Ok("hello")
/// }
///
/// # fn main() -> cloakroom::Result<()> {
/// let keys = KeyRing::new([std::env::var("SECRET").unwrap_or_else(|_| "x".repeat(32))])?;
/// let sessions = SessionLayer::builder(MemoryStore::new(), keys).build()?;
/// let app: Router = Router::new().route("/", get(handler)).layer(sessions);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SessionLayer {
    manager: SessionManager,
}

/// Builds a [`SessionLayer`]: a [`SessionManagerBuilder`] whose `build`
/// gives the layer.
pub type SessionLayerBuilder = SessionManagerBuilder<SessionLayer>;

impl SessionLayer {
    /// Starts building a layer over `store`, signing with `keys`.
    pub fn builder(store: impl Store, keys: KeyRing) -> SessionLayerBuilder {
        SessionManager::builder(store, keys).output()
    }

    /// A layer over an existing manager; the same as `SessionLayer::from`.
    pub fn new(manager: SessionManager) -> Self {
        SessionLayer { manager }
    }

    /// The manager the layer runs on.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }

    /// The layer's counters.
    pub fn stats(&self) -> Stats {
        self.manager.stats()
    }
}

impl From<SessionManager> for SessionLayer {
    fn from(manager: SessionManager) -> Self {
        SessionLayer { manager }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            manager: self.manager.clone(),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    manager: SessionManager,
}

impl<S: fmt::Debug> fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let session = self.manager.open(req.headers());
        req.extensions_mut().insert(session.clone());
        ResponseFuture {
            state: FutureState::Inner {
                // The service that poll_ready readied, called right away.
                future: self.inner.call(req),
                session: Some((self.manager.clone(), session)),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`SessionService`] response: the inner service's
    /// response, then, if the handler used its session, the commit to the
    /// store before the head leaves. A request that never touched its
    /// session, or only read it, costs no allocation here.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: FutureState<F, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = FutureStateProj]
    enum FutureState<F, B> {
        Inner {
            #[pin]
            future: F,
            session: Option<(SessionManager, Session)>,
        },
        Commit {
            future: CommitFuture,
            manager: SessionManager,
            response: Option<Response<B>>,
        },
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = std::result::Result<Response<B>, E>>,
    B: From<String> + Send + 'static,
{
    type Output = std::result::Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                FutureStateProj::Inner { future, session } => {
                    let response = match future.poll(cx) {
                        Poll::Ready(Ok(response)) => response,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    };
                    let Some((manager, session)) = session.take() else {
                        // Only reachable by polling again after Ready.
                        return Poll::Ready(Ok(response));
                    };
                    if !manager.needs_commit(&session) {
                        return Poll::Ready(Ok(response));
                    }
                    this.state.set(FutureState::Commit {
                        future: manager.commit(&session),
                        manager,
                        response: Some(response),
                    });
                }
                FutureStateProj::Commit {
                    future,
                    manager,
                    response,
                } => {
                    let committed = std::task::ready!(Pin::new(future).poll(cx));
                    let Some(mut response) = response.take() else {
                        // Only reachable by polling again after Ready.
                        let mut misuse = Response::new(B::from(String::new()));
                        *misuse.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                        return Poll::Ready(Ok(misuse));
                    };
                    return Poll::Ready(Ok(match committed {
                        Ok(headers) => {
                            headers.apply_to(response.headers_mut());
                            response
                        }
                        Err(err) => manager.commit_error_response(&err).map(B::from),
                    }));
                }
            }
        }
    }
}
