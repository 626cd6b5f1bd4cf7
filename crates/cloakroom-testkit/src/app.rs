//! One app that exercises the whole session API, for HTTP tests on every
//! store. Each route does one thing, so a test can count store calls.

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use cloakroom::{Error, Session, SessionLayer};
use std::collections::HashMap;

type Params = Query<HashMap<String, String>>;

/// The seed routes (`/`, `/detail`) plus one route per API call:
/// `/untouched`, `/same`, `/set?k=v`, `/set-then-fail?k=v` (answers 400),
/// `/get-many`, `/read-write`, `/incr`,
/// `/keys`,
/// `/remove?k` (answers `k=OLD`), `/discard?k`, `/values?prefix=` (answers
/// `name=value,…`), `/remember?idle=S&absolute=S&cookie=S` (the
/// session's own expiry, in seconds; without `idle`, back to the
/// defaults), `/expiry`, `/clear`, `/login?name=`, `/signin?name=` (login, and
/// bound to the user), `/logout`, `/id`, `/notify?k=v`,
/// `/take?name=`.
pub fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route(
            "/",
            get(|s: Session, Query(q): Params| async move {
                s.set("login", q.get("name").cloned().unwrap_or_default())
                    .await?;
                Ok::<_, Error>("index get ok!")
            }),
        )
        .route(
            "/detail",
            get(|s: Session| async move {
                let login: Option<String> = s.get("login").await?;
                Ok::<_, Error>(format!(
                    "detail get ok! {}",
                    login.as_deref().unwrap_or("None")
                ))
            }),
        )
        .route("/untouched", get(|| async { "nothing" }))
        .route(
            "/own-cache-policy",
            get(|s: Session| async move {
                let login: String = s.get("login").await?.unwrap_or_default();
                Ok::<_, Error>(([(axum::http::header::CACHE_CONTROL, "no-cache")], login))
            }),
        )
        .route(
            "/same",
            get(|s: Session| async move {
                let login: String = s.get("login").await?.unwrap_or_default();
                s.set("login", &login).await?;
                Ok::<_, Error>(login)
            }),
        )
        .route(
            "/set",
            get(|s: Session, Query(q): Params| async move {
                for (k, v) in q {
                    s.set(&k, v).await?;
                }
                Ok::<_, Error>("set")
            }),
        )
        .route(
            "/set-then-fail",
            get(|s: Session, Query(q): Params| async move {
                for (k, v) in q {
                    s.set(&k, v).await?;
                }
                Ok::<_, Error>((axum::http::StatusCode::BAD_REQUEST, "refused"))
            }),
        )
        .route(
            "/get-many",
            get(|s: Session| async move {
                let a: Option<String> = s.get("a").await?;
                let b: Option<String> = s.get("b").await?;
                let login: Option<String> = s.get("login").await?;
                Ok::<_, Error>(format!("{a:?} {b:?} {login:?}"))
            }),
        )
        .route(
            "/read-write",
            get(|s: Session| async move {
                let n: u64 = s.get("n").await?.unwrap_or(0);
                s.set("n", n + 1).await?;
                Ok::<_, Error>((n + 1).to_string())
            }),
        )
        .route(
            "/incr",
            get(|s: Session| async move {
                let n = s.increment("counter", 1).await?;
                let seen: Option<i64> = s.get("counter").await?;
                Ok::<_, Error>(format!("{n} {}", seen.unwrap_or(-1)))
            }),
        )
        .route(
            "/keys",
            get(|s: Session| async move { Ok::<_, Error>(s.keys().await?.join(",")) }),
        )
        .route(
            "/remove",
            get(|s: Session, Query(q): Params| async move { remove_names(&s, &q).await }),
        )
        .route(
            "/discard",
            get(|s: Session, Query(q): Params| async move {
                for k in q.keys() {
                    s.discard(k).await?;
                }
                Ok::<_, Error>("discarded")
            }),
        )
        .route(
            "/values",
            get(|s: Session, Query(q): Params| async move { values_with(&s, &q).await }),
        )
        .route(
            "/remember",
            get(|s: Session, Query(q): Params| async move { remember(&s, &q).await }),
        )
        .route(
            "/expiry",
            get(|s: Session| async move { Ok::<_, Error>(expiry_text(&s)) }),
        )
        .route(
            "/clear",
            get(|s: Session| async move {
                s.clear().await?;
                Ok::<_, Error>("cleared")
            }),
        )
        .route(
            "/login",
            get(|s: Session, Query(q): Params| async move {
                s.cycle_id().await?;
                s.set("login", q.get("name").cloned().unwrap_or_default())
                    .await?;
                Ok::<_, Error>("login ok!")
            }),
        )
        .route(
            "/signin",
            get(|s: Session, Query(q): Params| async move {
                let name = q.get("name").cloned().unwrap_or_default();
                s.cycle_id().await?;
                s.set("login", &name).await?;
                s.bind_user(&name, cloakroom::ClientInfo::default()).await?;
                Ok::<_, Error>("signin ok!")
            }),
        )
        .route(
            "/logout",
            get(|s: Session| async move {
                s.destroy().await?;
                Ok::<_, Error>("logout ok!")
            }),
        )
        .route(
            "/id",
            get(|s: Session| async move {
                Ok::<_, Error>(s.id().await?.map(|id| id.to_string()).unwrap_or_default())
            }),
        )
        .route(
            "/notify",
            get(|s: Session, Query(q): Params| async move {
                for (k, v) in q {
                    s.notifications().set(&k, v).await?;
                }
                Ok::<_, Error>("notified")
            }),
        )
        .route(
            "/take",
            get(|s: Session, Query(q): Params| async move {
                let name = q.get("name").cloned().unwrap_or_default();
                let v: Option<String> = s.notifications().take(&name).await?;
                Ok::<_, Error>(v.unwrap_or_else(|| "None".to_owned()))
            }),
        )
        .layer(layer)
}

/// `/remove?k&…`: removes each name and answers `k=OLD` for each, sorted
/// by name, `None` for a name that was not set.
pub(crate) async fn remove_names(
    s: &Session,
    q: &HashMap<String, String>,
) -> Result<String, Error> {
    let mut names: Vec<&String> = q.keys().collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let old: Option<String> = s.remove(name).await?;
        out.push(format!("{name}={}", old.as_deref().unwrap_or("None")));
    }
    Ok(out.join(","))
}

/// `/values?prefix=P`: every string value whose name starts with `P`, as
/// `name=value` joined by commas.
pub(crate) async fn values_with(s: &Session, q: &HashMap<String, String>) -> Result<String, Error> {
    let prefix = q.get("prefix").map(String::as_str).unwrap_or("");
    let values = s.values::<serde_json::Value>(prefix).await?;
    Ok(values
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            )
        })
        .collect::<Vec<_>>()
        .join(","))
}

/// `/remember?idle=S&absolute=S&cookie=S`: gives the session its own
/// expiry (seconds; `cookie` optional); without `idle`, the defaults again.
pub(crate) async fn remember(s: &Session, q: &HashMap<String, String>) -> Result<String, Error> {
    let secs = |k: &str| {
        q.get(k)
            .and_then(|v| v.parse().ok())
            .map(std::time::Duration::from_secs)
    };
    let own = secs("idle").map(|idle| {
        let own = cloakroom::SessionExpiry::new(idle, secs("absolute").unwrap_or(idle));
        match secs("cookie") {
            Some(age) => own.persistent(age),
            None => own,
        }
    });
    s.set_expiry(own).await?;
    Ok("remembered".to_owned())
}

/// `/expiry`: `idle=S cookie=S` for a session with its own expiry
/// (`cookie=none` for a browser-session cookie), or `default`.
pub(crate) fn expiry_text(s: &Session) -> String {
    match s.expiry() {
        Some(own) => format!(
            "idle={} cookie={}",
            own.idle_timeout().as_secs(),
            own.cookie_max_age()
                .map_or_else(|| "none".to_owned(), |d| d.as_secs().to_string())
        ),
        None => "default".to_owned(),
    }
}
