//! The bridge from [pycket](https://github.com/diogobaeder/pycket): what a
//! Tornado app using pycket keeps, read and written safely from Rust.
//!
//! - [`TornadoSecret`] checks (and writes) Tornado's signed cookie values,
//!   versions 1 and 2, as `get_secure_cookie` does: the `PYCKET_ID` cookie
//!   that carries a pycket session id.
//! - [`unpickle`] reads pycket's pickled sessions and notifications as
//!   JSON, accepting plain data only and executing nothing; [`pickle`]
//!   writes JSON back in a form Python 3 reads.
//! - With the `migrate` feature, `MigrateLayer` carries a Tornado user's
//!   pycket session over to a Cloakroom session on their first request to
//!   the Rust service, `BulkImport` moves them all ahead of time, and
//!   `ShareLayer` lets the Rust service read and write pycket's sessions in
//!   place, beside the Tornado app.
//!
//! ```
//! use cloakroom_pycket::{TornadoSecret, unpickle};
//!
//! let secret = TornadoSecret::new("the Tornado app's cookie_secret");
//! let cookie = secret.sign("PYCKET_ID", b"0b9c4d0e-6a49-4c55-8f2a-1b6f0d1e2c3a", 1_800_000_000);
//! let id = secret.verify("PYCKET_ID", cookie.as_bytes(), 31, 1_800_000_060).unwrap().value;
//! // The session under that id in Redis, as pycket wrote it:
//! // pickle.dumps({"login": "alice"}) with Python 3.11's default protocol.
//! let stored = b"\x80\x04\x95\x14\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x05login\x94\x8c\x05alice\x94s.";
//! assert_eq!(unpickle(stored).unwrap()["login"], "alice");
//! # assert_eq!(id.len(), 36);
//! ```
#![warn(missing_docs)]

#[cfg(feature = "memcached")]
mod memcached;
#[cfg(feature = "migrate")]
mod migrate;
mod pickle;
#[cfg(feature = "migrate")]
mod share;
mod tornado;

#[cfg(feature = "memcached")]
pub use memcached::PycketMemcached;
#[cfg(feature = "migrate")]
pub use migrate::{
    BulkImport, IMPORTED_PREFIX, ImportCounts, MigrateError, MigrateLayer, MigrateService,
    PYCKET_COOKIE, PycketRedis, PycketSession, PycketStore,
};
pub use pickle::{PickleError, pickle, unpickle};
#[cfg(feature = "migrate")]
pub use share::{
    PYCKET_EXPIRE, ShareError, ShareLayer, ShareService, SharedSession, TORNADO_EXPIRES_DAYS,
};
pub use tornado::{DEFAULT_MAX_AGE_DAYS, SignedValue, TornadoSecret};
