//! Framework glue. Each adapter only translates between its framework and
//! [`SessionManager`](crate::SessionManager); no other module imports one.

#[cfg(feature = "actix")]
pub(crate) mod actix;
#[cfg(feature = "axum")]
pub(crate) mod axum;
#[cfg(feature = "tower")]
pub(crate) mod tower;
