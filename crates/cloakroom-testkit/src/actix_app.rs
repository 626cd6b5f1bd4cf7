//! The test app of [`app`](crate::app), route for route, on actix-web.

use actix_web::{HttpResponse, web};
use cloakroom::{Error, Session};
use std::collections::HashMap;

type Params = web::Query<HashMap<String, String>>;

/// Registers the test app's routes (the same as [`app`](crate::app)'s).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/detail", web::get().to(detail))
        .route("/untouched", web::get().to(|| async { "nothing" }))
        .route("/own-cache-policy", web::get().to(own_cache_policy))
        .route("/same", web::get().to(same))
        .route("/set", web::get().to(set))
        .route("/set-then-fail", web::get().to(set_then_fail))
        .route("/get-many", web::get().to(get_many))
        .route("/read-write", web::get().to(read_write))
        .route("/incr", web::get().to(incr))
        .route("/keys", web::get().to(keys))
        .route("/remove", web::get().to(remove))
        .route("/discard", web::get().to(discard))
        .route("/values", web::get().to(values))
        .route("/remember", web::get().to(remember))
        .route("/expiry", web::get().to(expiry))
        .route("/clear", web::get().to(clear))
        .route("/login", web::get().to(login))
        .route("/signin", web::get().to(signin))
        .route("/logout", web::get().to(logout))
        .route("/id", web::get().to(id))
        .route("/notify", web::get().to(notify))
        .route("/take", web::get().to(take));
}

async fn index(s: Session, q: Params) -> Result<&'static str, Error> {
    s.set("login", q.get("name").cloned().unwrap_or_default())
        .await?;
    Ok("index get ok!")
}

async fn detail(s: Session) -> Result<String, Error> {
    let login: Option<String> = s.get("login").await?;
    Ok(format!(
        "detail get ok! {}",
        login.as_deref().unwrap_or("None")
    ))
}

async fn own_cache_policy(s: Session) -> Result<HttpResponse, Error> {
    let login: String = s.get("login").await?.unwrap_or_default();
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-cache"))
        .body(login))
}

async fn same(s: Session) -> Result<String, Error> {
    let login: String = s.get("login").await?.unwrap_or_default();
    s.set("login", &login).await?;
    Ok(login)
}

async fn set(s: Session, q: Params) -> Result<&'static str, Error> {
    for (k, v) in q.into_inner() {
        s.set(&k, v).await?;
    }
    Ok("set")
}

async fn set_then_fail(s: Session, q: Params) -> Result<HttpResponse, Error> {
    for (k, v) in q.into_inner() {
        s.set(&k, v).await?;
    }
    Ok(HttpResponse::BadRequest().body("refused"))
}

async fn get_many(s: Session) -> Result<String, Error> {
    let a: Option<String> = s.get("a").await?;
    let b: Option<String> = s.get("b").await?;
    let login: Option<String> = s.get("login").await?;
    Ok(format!("{a:?} {b:?} {login:?}"))
}

async fn read_write(s: Session) -> Result<String, Error> {
    let n: u64 = s.get("n").await?.unwrap_or(0);
    s.set("n", n + 1).await?;
    Ok((n + 1).to_string())
}

async fn incr(s: Session) -> Result<String, Error> {
    let n = s.increment("counter", 1).await?;
    let seen: Option<i64> = s.get("counter").await?;
    Ok(format!("{n} {}", seen.unwrap_or(-1)))
}

async fn keys(s: Session) -> Result<String, Error> {
    Ok(s.keys().await?.join(","))
}

async fn remove(s: Session, q: Params) -> Result<String, Error> {
    crate::app::remove_names(&s, &q).await
}

async fn discard(s: Session, q: Params) -> Result<&'static str, Error> {
    for k in q.keys() {
        s.discard(k).await?;
    }
    Ok("discarded")
}

async fn values(s: Session, q: Params) -> Result<String, Error> {
    crate::app::values_with(&s, &q).await
}

async fn remember(s: Session, q: Params) -> Result<String, Error> {
    crate::app::remember(&s, &q).await
}

async fn expiry(s: Session) -> String {
    crate::app::expiry_text(&s)
}

async fn clear(s: Session) -> Result<&'static str, Error> {
    s.clear().await?;
    Ok("cleared")
}

async fn login(s: Session, q: Params) -> Result<&'static str, Error> {
    s.cycle_id().await?;
    s.set("login", q.get("name").cloned().unwrap_or_default())
        .await?;
    Ok("login ok!")
}

async fn signin(s: Session, q: Params) -> Result<&'static str, Error> {
    let name = q.get("name").cloned().unwrap_or_default();
    s.cycle_id().await?;
    s.set("login", &name).await?;
    s.bind_user(&name, cloakroom::ClientInfo::default()).await?;
    Ok("signin ok!")
}

async fn logout(s: Session) -> Result<&'static str, Error> {
    s.destroy().await?;
    Ok("logout ok!")
}

async fn id(s: Session) -> Result<String, Error> {
    Ok(s.id().await?.map(|id| id.to_string()).unwrap_or_default())
}

async fn notify(s: Session, q: Params) -> Result<&'static str, Error> {
    for (k, v) in q.into_inner() {
        s.notifications().set(&k, v).await?;
    }
    Ok("notified")
}

async fn take(s: Session, q: Params) -> Result<HttpResponse, Error> {
    let name = q.get("name").cloned().unwrap_or_default();
    let v: Option<String> = s.notifications().take(&name).await?;
    Ok(HttpResponse::Ok().body(v.unwrap_or_else(|| "None".to_owned())))
}
