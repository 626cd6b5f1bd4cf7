//! The seed demo, pycket's first example, route for route.

use axum::Router;
use axum::extract::Query;
use axum::http::header::USER_AGENT;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cloakroom::{ClientInfo, Session, SessionLayer};
use std::collections::HashMap;

/// The demo app: `/`, `/detail`, `/login` and `/logout`.
pub fn app(sessions: SessionLayer) -> Router {
    routes().layer(sessions)
}

/// The demo app, importing the users of a Tornado app with pycket as
/// they arrive (`[pycket] mode = "migrate"`).
pub fn app_migrating(sessions: SessionLayer, migrate: cloakroom_pycket::MigrateLayer) -> Router {
    routes().layer(migrate).layer(sessions)
}

/// The demo app on a Tornado app's own pycket sessions
/// (`[pycket] mode = "share"`): the Tornado seed's routes, `/`,
/// `/detail`, `/notify?msg=`, `/flash` and `/health`, answering as it
/// does, so either app can serve any request of one user.
pub fn app_sharing(share: cloakroom_pycket::ShareLayer) -> Router {
    Router::new()
        .route("/", get(shared::index))
        .route("/detail", get(shared::detail))
        .route("/notify", get(shared::notify))
        .route("/flash", get(shared::flash))
        .route("/health", get(|| async { "ok" }))
        .layer(share)
}

/// The handlers of share mode, on [`cloakroom_pycket::SharedSession`].
mod shared {
    use super::{Params, missing_name, name_param};
    use axum::Extension;
    use axum::extract::Query;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use cloakroom_pycket::{ShareError, SharedSession};

    fn failed(e: ShareError) -> Response {
        let status = if e.is_unavailable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        tracing::warn!(error = %e, "a shared pycket session failed");
        (status, format!("{e}\n")).into_response()
    }

    pub async fn index(Extension(session): Extension<SharedSession>, params: Params) -> Response {
        let Some(name) = name_param(params) else {
            return missing_name();
        };
        match session.set("login", name).await {
            Ok(()) => "index get ok!".into_response(),
            Err(e) => failed(e),
        }
    }

    pub async fn detail(Extension(session): Extension<SharedSession>) -> Response {
        match session.get::<String>("login").await {
            Ok(login) => {
                format!("detail get ok! {}", login.as_deref().unwrap_or("None")).into_response()
            }
            Err(e) => failed(e),
        }
    }

    pub async fn notify(
        Extension(session): Extension<SharedSession>,
        Query(mut q): Params,
    ) -> Response {
        let Some(msg) = q.remove("msg") else {
            return (StatusCode::BAD_REQUEST, "missing query parameter: msg\n").into_response();
        };
        match session.notify("flash", msg).await {
            Ok(()) => "notified".into_response(),
            Err(e) => failed(e),
        }
    }

    pub async fn flash(Extension(session): Extension<SharedSession>) -> Response {
        match session.take_notification::<String>("flash").await {
            Ok(flash) => format!("flash: {}", flash.as_deref().unwrap_or("None")).into_response(),
            Err(e) => failed(e),
        }
    }
}

fn routes() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/detail", get(detail))
        .route("/login", get(login))
        .route("/logout", get(logout))
        .route("/health", get(|| async { "ok" }))
}

/// `?name=...`, where empty counts as missing.
type Params = Query<HashMap<String, String>>;

fn name_param(Query(mut q): Params) -> Option<String> {
    q.remove("name").filter(|n| !n.is_empty())
}

fn missing_name() -> Response {
    (
        StatusCode::BAD_REQUEST,
        "missing query parameter: name (try /?name=alice)\n",
    )
        .into_response()
}

/// `GET /?name=alice` stores `login` = alice.
async fn index(session: Session, params: Params) -> Result<Response, cloakroom::Error> {
    let Some(name) = name_param(params) else {
        return Ok(missing_name());
    };
    session.set("login", name).await?;
    Ok("index get ok!".into_response())
}

/// `GET /detail` shows `login`, or `None`.
async fn detail(session: Session) -> Result<String, cloakroom::Error> {
    let login: Option<String> = session.get("login").await?;
    Ok(format!(
        "detail get ok! {}",
        login.as_deref().unwrap_or("None")
    ))
}

/// `GET /login?name=X`: a new id first, then `login` = X, and the session
/// bound to user X (so `cloakroom sessions list --user X` finds it).
async fn login(
    session: Session,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, cloakroom::Error> {
    let Some(name) = name_param(params) else {
        return Ok(missing_name());
    };
    session.cycle_id().await?;
    session.set("login", &name).await?;
    let mut client = ClientInfo::default();
    if let Some(agent) = headers.get(USER_AGENT).and_then(|v| v.to_str().ok()) {
        client = client.user_agent(agent);
    }
    session.bind_user(&name, client).await?;
    Ok("login ok!".into_response())
}

/// `GET /logout`: the session is deleted and the cookie cleared.
async fn logout(session: Session) -> Result<&'static str, cloakroom::Error> {
    session.destroy().await?;
    Ok("logout ok!")
}
