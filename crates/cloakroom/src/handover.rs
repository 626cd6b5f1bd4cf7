//! Sessions prepared ahead of time for a client that will prove itself
//! with another credential on its first visit: a bulk import from another
//! session system (pycket's, say) creates them, and the client's first
//! request takes one over.

use crate::token::{SessionId, TOKEN_BYTES, Token};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// The key of a prepared session, derived from a server secret and the
/// client's other credential (its verified value), so that only a server
/// holding the secret, seeing that credential, can find the session.
///
/// [`SessionAdmin::prepare`](crate::SessionAdmin::prepare) creates a
/// session under it; [`Session::take_over`](crate::Session::take_over)
/// gives it to the request that presents the credential, under a fresh
/// id. The derived key never reaches a client.
///
/// ```
/// use cloakroom::Handover;
/// let a = Handover::derive(b"the other system's secret", b"0b8f3c1e-user-credential");
/// let b = Handover::derive(b"the other system's secret", b"0b8f3c1e-user-credential");
/// assert_eq!(a.id(), b.id());
/// assert_ne!(a.id(), Handover::derive(b"another secret", b"0b8f3c1e-user-credential").id());
/// ```
#[derive(Clone)]
pub struct Handover {
    pub(crate) token: Token,
}

impl Handover {
    /// HMAC-SHA256 of `context` under `secret`, in a domain of its own.
    /// `secret` must be a server secret the client never sees (the other
    /// system's signing secret, say); `context` the credential's value,
    /// after the caller verified it.
    pub fn derive(secret: &[u8], context: &[u8]) -> Handover {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
        mac.update(b"cloakroom handover v1\0");
        mac.update(context);
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes.copy_from_slice(&mac.finalize().into_bytes());
        Handover {
            token: Token::from_bytes(bytes),
        }
    }

    /// The id the prepared session is stored under.
    pub fn id(&self) -> SessionId {
        self.token.id()
    }
}

impl fmt::Debug for Handover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handover(id={})", self.id().short())
    }
}
