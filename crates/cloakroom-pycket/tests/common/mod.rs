//! What the migrate-mode tests share: the Rust side of the seed.

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use cloakroom::{CookieConfig, KeyRing, MemoryStore, Session, SessionLayer};
use cloakroom_pycket::MigrateLayer;
use cloakroom_testkit::TestServer;
use std::collections::HashMap;

/// The Rust service: the seed's routes (`/`, `/detail`, `/flash`,
/// `/logout`) on Cloakroom (memory store), behind `migrate`.
pub async fn rust_service(migrate: MigrateLayer) -> TestServer {
    let sessions = SessionLayer::builder(MemoryStore::new(), KeyRing::random())
        .cookie(CookieConfig::default().secure(false))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/detail",
            get(|s: Session| async move {
                let login: Option<String> = s.get("login").await?;
                Ok::<_, cloakroom::Error>(format!(
                    "detail get ok! {}",
                    login.as_deref().unwrap_or("None")
                ))
            }),
        )
        .route(
            "/flash",
            get(|s: Session| async move {
                let flash: Option<String> = s.notifications().take("flash").await?;
                Ok::<_, cloakroom::Error>(format!("flash: {}", flash.as_deref().unwrap_or("None")))
            }),
        )
        .route(
            "/logout",
            get(|s: Session| async move {
                s.destroy().await?;
                Ok::<_, cloakroom::Error>("logout ok!")
            }),
        )
        .route(
            "/",
            get(
                |s: Session, Query(q): Query<HashMap<String, String>>| async move {
                    s.set("login", q.get("name").cloned().unwrap_or_default())
                        .await?;
                    Ok::<_, cloakroom::Error>("index get ok!")
                },
            ),
        )
        .layer(migrate)
        .layer(sessions);
    TestServer::start(app).await
}
