//! A visit counter: the README's axum example.
//!
//! `SESSION_SECRET='at least 32 bytes of secret......' cargo run -p cloakroom --example counter`

use axum::{Router, routing::get};
use cloakroom::{CookieConfig, KeyRing, MemoryStore, Session, SessionLayer};

async fn counter(session: Session) -> cloakroom::Result<String> {
    let n: u64 = session.get("n").await?.unwrap_or(0);
    session.set("n", n + 1).await?;
    Ok(format!("visit {}", n + 1))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys = KeyRing::new([std::env::var("SESSION_SECRET")?])?; // 32+ bytes
    let sessions = SessionLayer::builder(MemoryStore::new(), keys)
        // Plain HTTP on localhost: a browser would drop a Secure cookie.
        .cookie(CookieConfig::default().secure(false))
        .build()?;
    let app = Router::new().route("/", get(counter)).layer(sessions);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await?;
    Ok(())
}
