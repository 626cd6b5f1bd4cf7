//! The showcase: a few server-rendered pages that use every part of the
//! session API in a real browser.
//!
//! - `GET /` shows who is signed in, a per-session visit counter (an atomic
//!   [`Session::increment`], so two tabs never lose a visit), and the
//!   one-time "Welcome back" notification; it offers a sign-in or sign-out
//!   form.
//! - `POST /login` cycles the session id, stores the user, and binds the
//!   session to them (with the browser's `User-Agent`).
//! - `POST /logout` destroys the session.
//! - `GET /devices`, "Your devices": the signed-in user's sessions, this
//!   one marked, each with when it started, when it was last used, and its
//!   browser; `POST /devices/end` signs one device out, and
//!   `POST /devices/end-others` every device but this one.
//!
//! Every form carries a CSRF token that lives in the session and is compared
//! in constant time; `SameSite=Lax` is the first line of defence, the
//! token the second. Every page is `Cache-Control: no-store`, so the back
//! button after sign-out cannot show a signed-in page from the cache.

use axum::Form;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloakroom::{ClientInfo, Session, SessionId, SessionLayer};
use serde::Deserialize;

/// The showcase app.
pub fn app(sessions: SessionLayer) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/devices", get(devices))
        .route("/devices/end", post(end_device))
        .route("/devices/end-others", post(end_other_devices))
        .route("/health", get(|| async { "ok" }))
        .layer(sessions)
}

const CSRF: &str = "csrf";
const USER: &str = "user";
const VISITS: &str = "visits";
const WELCOME: &str = "welcome";

fn new_csrf_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The session's CSRF token, made on first use.
async fn csrf_token(session: &Session) -> cloakroom::Result<String> {
    if let Some(token) = session.get::<String>(CSRF).await? {
        return Ok(token);
    }
    let token = new_csrf_token();
    session.set(CSRF, &token).await?;
    Ok(token)
}

/// Whether the submitted token is the session's, compared in constant time.
async fn csrf_ok(session: &Session, submitted: &str) -> cloakroom::Result<bool> {
    let Some(expected) = session.get::<String>(CSRF).await? else {
        return Ok(false);
    };
    let (a, b) = (expected.as_bytes(), submitted.as_bytes());
    let diff = a
        .iter()
        .zip(b)
        .fold(a.len() ^ b.len(), |acc, (x, y)| acc | usize::from(x ^ y));
    Ok(diff == 0)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} · Cloakroom</title>
<style>
  body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 36rem; margin: 3rem auto; padding: 0 1rem; color: #222; }}
  h1 {{ font-size: 1.6rem; }}
  .notice {{ background: #e8f5e9; border: 1px solid #a5d6a7; padding: .6rem 1rem; border-radius: 6px; }}
  .muted {{ color: #666; font-size: .9rem; }}
  input, button {{ font: inherit; padding: .3rem .6rem; }}
  ul#device-list {{ list-style: none; padding: 0; }}
  li.device {{ border: 1px solid #ddd; border-radius: 6px; padding: .6rem 1rem; margin: .5rem 0; }}
  li.device.current {{ border-color: #a5d6a7; background: #f1f8e9; }}
  li.device form {{ margin-top: .4rem; }}
</style>
</head>
<body>
<h1>Cloakroom showcase</h1>
{body}
</body>
</html>
"#
    );
    let mut response = Html(html).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn home(session: Session) -> cloakroom::Result<Response> {
    let visits = session.increment(VISITS, 1).await?;
    let user: Option<String> = session.get(USER).await?;
    let csrf = csrf_token(&session).await?;
    let mut body = String::new();
    if let Some(welcome) = session.notifications().take::<String>(WELCOME).await? {
        body.push_str(&format!(
            r#"<p class="notice" id="welcome">{}</p>"#,
            escape(&welcome)
        ));
    }
    match &user {
        Some(user) => body.push_str(&format!(
            r#"<p id="who">Signed in as <strong id="user">{user}</strong>.</p>
<p>Visits this session: <span id="visits">{visits}</span></p>
<form method="post" action="/logout">
  <input type="hidden" name="csrf" value="{csrf}">
  <button id="logout" type="submit">Sign out</button>
</form>
<p><a id="devices" href="/devices">Your devices</a></p>"#,
            user = escape(user),
        )),
        None => body.push_str(&format!(
            r#"<p id="who">Not signed in.</p>
<p>Visits this session: <span id="visits">{visits}</span></p>
<form method="post" action="/login">
  <input type="hidden" name="csrf" value="{csrf}">
  <label>Name <input id="name" name="name" required maxlength="64" autocomplete="username"></label>
  <button id="login" type="submit">Sign in</button>
</form>"#
        )),
    }
    Ok(page("Home", &body))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    csrf: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct LogoutForm {
    csrf: String,
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        "invalid or missing CSRF token; reload the page and try again\n",
    )
        .into_response()
}

async fn login(
    session: Session,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> cloakroom::Result<Response> {
    if !csrf_ok(&session, &form.csrf).await? {
        return Ok(forbidden());
    }
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Ok((
            StatusCode::BAD_REQUEST,
            "a name of 1 to 64 printable characters, please\n",
        )
            .into_response());
    }
    // A new id at the change of privilege, bound to the user first: if the
    // cap refuses it, nothing of the sign-in is written.
    session.cycle_id().await?;
    let mut client = ClientInfo::default();
    if let Some(agent) = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        client = client.user_agent(agent);
    }
    match session.bind_user(name, client).await {
        Err(cloakroom::Error::TooManySessions { limit }) => {
            let body = format!(
                r#"<p id="refused">You are signed in on {limit} devices already, the most allowed. Sign out on one of them first.</p><p><a href="/">Back</a></p>"#
            );
            return Ok((StatusCode::CONFLICT, page("Too many devices", &body)).into_response());
        }
        other => other?,
    }
    session.set(USER, name).await?;
    session.set(CSRF, new_csrf_token()).await?;
    session
        .notifications()
        .set(WELCOME, format!("Welcome back, {name}"))
        .await?;
    Ok(Redirect::to("/").into_response())
}

async fn logout(session: Session, Form(form): Form<LogoutForm>) -> cloakroom::Result<Response> {
    if !csrf_ok(&session, &form.csrf).await? {
        return Ok(forbidden());
    }
    session.destroy().await?;
    Ok(Redirect::to("/").into_response())
}

/// "Your devices": every session of the signed-in user.
async fn devices(session: Session) -> cloakroom::Result<Response> {
    let Some(user) = session.user().await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let current = session.id().await?;
    let csrf = csrf_token(&session).await?;
    let mut rows = String::new();
    for device in session.admin().list(&user).await? {
        let this = Some(device.id) == current;
        let browser = device
            .client
            .user_agent
            .as_deref()
            .unwrap_or("an unknown browser");
        rows.push_str(&format!(
            r#"<li class="device{mark}" data-id="{id}">
  <strong class="browser">{browser}</strong>{note}<br>
  <span class="muted">started {started}, last used {seen}</span>
  <form method="post" action="/devices/end">
    <input type="hidden" name="csrf" value="{csrf}">
    <input type="hidden" name="id" value="{id}">
    <button class="end" type="submit">Sign out this device</button>
  </form>
</li>
"#,
            mark = if this { " current" } else { "" },
            note = if this { " <em>(this device)</em>" } else { "" },
            id = device.id,
            browser = escape(browser),
            started = crate::sessions::rfc3339(device.created),
            seen = crate::sessions::rfc3339(device.last_seen),
        ));
    }
    let body = format!(
        r#"<p>Signed in as <strong id="user">{user}</strong>. These are your devices:</p>
<ul id="device-list">
{rows}</ul>
<form method="post" action="/devices/end-others">
  <input type="hidden" name="csrf" value="{csrf}">
  <button id="end-others" type="submit">Sign out everywhere else</button>
</form>
<p><a href="/">Home</a></p>"#,
        user = escape(&user),
    );
    Ok(page("Your devices", &body))
}

#[derive(Debug, Deserialize)]
struct EndForm {
    csrf: String,
    id: String,
}

/// Signs one of the user's devices out. Only the user's own sessions can
/// be ended this way: the id must be in their list.
async fn end_device(session: Session, Form(form): Form<EndForm>) -> cloakroom::Result<Response> {
    if !csrf_ok(&session, &form.csrf).await? {
        return Ok(forbidden());
    }
    let Some(user) = session.user().await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let Some(id) = SessionId::decode(&form.id) else {
        return Ok((StatusCode::BAD_REQUEST, "not a session id\n").into_response());
    };
    let admin = session.admin();
    if admin.list(&user).await?.iter().any(|d| d.id == id) {
        if session.id().await? == Some(id) {
            session.destroy().await?;
            return Ok(Redirect::to("/").into_response());
        }
        admin.end(&id).await?;
    }
    Ok(Redirect::to("/devices").into_response())
}

async fn end_other_devices(
    session: Session,
    Form(form): Form<LogoutForm>,
) -> cloakroom::Result<Response> {
    if !csrf_ok(&session, &form.csrf).await? {
        return Ok(forbidden());
    }
    if let (Some(user), Some(current)) = (session.user().await?, session.id().await?) {
        session.admin().end_user_except(&user, &current).await?;
    }
    Ok(Redirect::to("/devices").into_response())
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<b onclick="x">'&'</b>"#),
            "&lt;b onclick=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/b&gt;"
        );
    }
}
