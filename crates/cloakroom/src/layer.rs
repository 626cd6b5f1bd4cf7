//! The tower layer: one [`Session`] per request, committed before the
//! response head leaves.

use crate::cookie::{CookieConfig, KeyRing};
use crate::error::{Error, Result};
use crate::expiry::{Clock, Expiry, ExpiryPolicy, SystemClock};
use crate::limits::Limits;
use crate::session::Session;
use crate::store::{DynStore, Store};
use crate::token::Token;
use crate::transport::Transport;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower_layer::Layer;
use tower_service::Service;

/// At most one warning about rejected tokens per this interval.
const REJECT_WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Settings shared by every request of one layer.
pub(crate) struct Shared {
    pub(crate) store: Box<dyn DynStore>,
    pub(crate) keys: KeyRing,
    pub(crate) transport: Transport,
    pub(crate) expiry: ExpiryPolicy,
    pub(crate) limits: Limits,
    clock: Box<dyn Clock>,
    rejected: AtomicU64,
    last_warning: std::sync::Mutex<Option<Instant>>,
}

impl Shared {
    pub(crate) fn expiry(&self) -> Expiry {
        self.expiry.at(self.clock.now())
    }

    pub(crate) fn sign(&self, token: &Token) -> String {
        self.keys.sign(self.transport.name(), token)
    }

    /// Counts a cookie that failed verification, and warns now and then:
    /// a stream of them is a sign of someone guessing.
    pub(crate) fn reject_token(&self) {
        let total = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= REJECT_WARN_INTERVAL) {
            *last = Some(Instant::now());
            tracing::warn!(
                rejected_total = total,
                "rejected a session cookie that failed verification"
            );
        }
    }
}

/// Counters of one [`SessionLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Session cookies that failed verification (forged, malformed, signed
    /// by a removed key) since the layer was built.
    pub rejected_tokens: u64,
}

/// The tower layer that gives each request a [`Session`].
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
#[derive(Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

impl SessionLayer {
    /// Starts building a layer over `store`, signing with `keys`.
    pub fn builder(store: impl Store, keys: KeyRing) -> SessionLayerBuilder {
        SessionLayerBuilder {
            store: Box::new(store),
            keys,
            transport: Transport::Cookie(CookieConfig::default()),
            expiry: ExpiryPolicy::default(),
            limits: Limits::default(),
            clock: Box::new(SystemClock),
        }
    }

    /// The layer's counters.
    pub fn stats(&self) -> Stats {
        Stats {
            rejected_tokens: self.shared.rejected.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("transport", &self.shared.transport)
            .field("expiry", &self.shared.expiry)
            .field("keys", &self.shared.keys)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SessionLayer`]; [`build`](Self::build) checks the settings.
pub struct SessionLayerBuilder {
    store: Box<dyn DynStore>,
    keys: KeyRing,
    transport: Transport,
    expiry: ExpiryPolicy,
    limits: Limits,
    clock: Box<dyn Clock>,
}

impl SessionLayerBuilder {
    /// The cookie's name and attributes.
    pub fn cookie(mut self, cookie: CookieConfig) -> Self {
        self.transport = Transport::Cookie(cookie);
        self
    }

    /// Carries the token in a request and response header instead of a
    /// cookie, for API clients (like Spring Session's `X-Auth-Token`). The
    /// client sends back the value it last received; an empty value in a
    /// response means the session ended.
    ///
    /// ```
    /// use cloakroom::{KeyRing, MemoryStore, SessionLayer};
    /// use http::HeaderName;
    /// let layer = SessionLayer::builder(MemoryStore::new(), KeyRing::random())
    ///     .header(HeaderName::from_static("x-auth-token"))
    ///     .build()?;
    /// # Ok::<(), cloakroom::Error>(())
    /// ```
    pub fn header(mut self, name: HeaderName) -> Self {
        self.transport = Transport::Header(name);
        self
    }

    /// The idle timeout and absolute lifetime.
    pub fn expiry(mut self, expiry: ExpiryPolicy) -> Self {
        self.expiry = expiry;
        self
    }

    /// Size limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The clock; tests use a [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<SessionLayer> {
        if let Transport::Cookie(cookie) = &self.transport {
            cookie.validate()?;
        }
        self.expiry.validate()?;
        Ok(SessionLayer {
            shared: Arc::new(Shared {
                store: self.store,
                keys: self.keys,
                transport: self.transport,
                expiry: self.expiry,
                limits: self.limits,
                clock: self.clock,
                rejected: AtomicU64::new(0),
                last_warning: std::sync::Mutex::new(None),
            }),
        })
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
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
    ResBody: From<&'static str> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let headers = shared.transport.token_headers(req.headers());
        let session = Session::new(shared.clone(), headers);
        req.extensions_mut().insert(session.clone());
        ResponseFuture {
            state: FutureState::Inner {
                // The service that poll_ready readied, called right away.
                future: self.inner.call(req),
                session: Some(session),
            },
        }
    }
}

type CommitFuture<B> = Pin<Box<dyn Future<Output = Response<B>> + Send>>;

pin_project_lite::pin_project! {
    /// The future of a [`SessionService`] response: the inner service's
    /// response, then, if the handler used its session, the commit to the
    /// store before the head leaves. A request that never touched its
    /// session costs no allocation here.
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
            session: Option<Session>,
        },
        Commit {
            future: CommitFuture<B>,
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
    B: From<&'static str> + Send + 'static,
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
                    let Some(session) = session.take() else {
                        // Only reachable by polling again after Ready.
                        return Poll::Ready(Ok(response));
                    };
                    if session.untouched() {
                        return Poll::Ready(Ok(response));
                    }
                    this.state.set(FutureState::Commit {
                        future: Box::pin(commit(session, response)),
                    });
                }
                FutureStateProj::Commit { future } => return future.as_mut().poll(cx).map(Ok),
            }
        }
    }
}

async fn commit<B: From<&'static str>>(session: Session, mut response: Response<B>) -> Response<B> {
    match session.commit().await {
        Ok(action) => {
            session
                .shared()
                .transport
                .write(action, response.headers_mut());
            response
        }
        Err(err) => store_failure(&err),
    }
}

fn store_failure<B: From<&'static str>>(err: &Error) -> Response<B> {
    tracing::error!(error = %err, "session was not saved");
    let (status, body) = err.status_and_body();
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
