//! Session tokens (the secret the browser holds) and session ids (the key the
//! store uses, derived from the token).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::fmt;

/// Bytes of entropy in a token: 256 bits.
pub(crate) const TOKEN_BYTES: usize = 32;
/// Length of a token encoded as unpadded base64url.
pub(crate) const TOKEN_B64_LEN: usize = 43;
/// Bytes of SHA-256 kept in a [`SessionId`]: 128 bits.
const ID_BYTES: usize = 16;

/// The secret half of a session: 256 random bits from the OS CSPRNG.
///
/// It travels only inside the signed cookie. It is never logged: its `Debug`
/// shows the short hash of its [`SessionId`] instead.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token {
    bytes: [u8; TOKEN_BYTES],
    /// Its [`SessionId`], hashed once: nearly every use of a token needs it.
    id: SessionId,
}

/// Tokens' worth of OS randomness fetched per system call.
const BATCH_TOKENS: usize = 64;

/// Bytes from the OS CSPRNG, fetched [`BATCH_TOKENS`] tokens at a time:
/// one `getrandom` call per 64 sessions instead of one per session. Every
/// byte still comes straight from the OS (no userspace generator), and
/// each is handed out once and then zeroed.
struct OsRandomBatch {
    bytes: [u8; TOKEN_BYTES * BATCH_TOKENS],
    next: usize,
    /// The [`fork::generation`] it was filled in: a child of `fork`
    /// refills, so parent and child never hand out the same bytes.
    generation: u64,
}

thread_local! {
    static BATCH: std::cell::RefCell<OsRandomBatch> = const {
        std::cell::RefCell::new(OsRandomBatch {
            bytes: [0; TOKEN_BYTES * BATCH_TOKENS],
            next: TOKEN_BYTES * BATCH_TOKENS,
            generation: 0,
        })
    };
}

/// Tells a forked child from its parent without a system call per token
/// (`getpid` is one on today's glibc).
mod fork {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Bumped in the child after every `fork`; a process-wide counter
    /// standing in for the pid when the handler could not be registered.
    static GENERATION: AtomicU64 = AtomicU64::new(0);
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

    #[cfg(unix)]
    extern "C" fn in_child() {
        // Async-signal-safe: one atomic add.
        GENERATION.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(unix)]
    fn register() -> bool {
        // SAFETY: registers a handler that only touches an atomic, which
        // is allowed in a child of a multi-threaded process; the handler
        // is a `static` function, alive for the whole process.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) == 0 }
    }

    #[cfg(not(unix))]
    fn register() -> bool {
        // No `fork` to guard against.
        true
    }

    /// A number that differs between a process and any child it forks.
    pub(super) fn generation() -> u64 {
        if *REGISTERED.get_or_init(register) {
            GENERATION.load(Ordering::Relaxed)
        } else {
            // Out of memory for the handler: the pid, one call per token.
            u64::from(std::process::id()) | 1 << 63
        }
    }
}

impl Token {
    /// Draws a new token: 256 bits from the operating system's CSPRNG.
    pub(crate) fn generate() -> Self {
        BATCH.with_borrow_mut(|batch| {
            let generation = fork::generation();
            if batch.next == batch.bytes.len() || batch.generation != generation {
                // The OS RNG failing is not recoverable and not caused by input.
                getrandom::fill(&mut batch.bytes)
                    .expect("the operating system's random source failed");
                batch.next = 0;
                batch.generation = generation;
            }
            let slot = &mut batch.bytes[batch.next..batch.next + TOKEN_BYTES];
            let mut token = [0u8; TOKEN_BYTES];
            token.copy_from_slice(slot);
            slot.fill(0);
            batch.next += TOKEN_BYTES;
            Token::from_bytes(token)
        })
    }

    /// A token of these bytes, with its id.
    pub(crate) fn from_bytes(bytes: [u8; TOKEN_BYTES]) -> Self {
        let digest = Sha256::digest(bytes);
        let mut id = [0u8; ID_BYTES];
        id.copy_from_slice(&digest[..ID_BYTES]);
        Token {
            bytes,
            id: SessionId(id),
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8; TOKEN_BYTES] {
        &self.bytes
    }

    #[cfg(test)]
    pub(crate) fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.bytes)
    }

    /// Decodes exactly [`TOKEN_B64_LEN`] base64url characters.
    pub(crate) fn decode(text: &[u8]) -> Option<Self> {
        if text.len() != TOKEN_B64_LEN {
            return None;
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(TOKEN_BYTES) => Some(Token::from_bytes(bytes)),
            _ => None,
        }
    }

    /// The store key of this token: the first 128 bits of its SHA-256.
    pub(crate) fn id(&self) -> SessionId {
        self.id
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(id={})", self.id().short())
    }
}

/// The server-side id of a session: the first 128 bits of SHA-256 of its
/// token, shown as 22 base64url characters.
///
/// Stores use it as their key, so a dump of the store yields no cookie
/// anyone could replay: going back from an id to its token means inverting
/// SHA-256. It is safe to log and to keep in an application's own tables.
///
/// ```
/// # async fn f(session: cloakroom::Session) -> cloakroom::Result<()> {
/// if let Some(id) = session.id().await? {
///     tracing::info!(session = %id, "user logged in");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; ID_BYTES]);

impl SessionId {
    /// The id as 22 base64url characters, the form stores put in their keys.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(22);
        self.encode_into(&mut text);
        text
    }

    /// Appends [`encode`](Self::encode)'s 22 characters to `out`, for a
    /// store building a key around the id without another allocation.
    ///
    /// ```
    /// # let id = cloakroom::SessionId::decode("AAAAAAAAAAAAAAAAAAAAAA").unwrap();
    /// let mut key = String::from("sessions:");
    /// id.encode_into(&mut key);
    /// assert_eq!(key, format!("sessions:{}", id.encode()));
    /// ```
    pub fn encode_into(&self, out: &mut String) {
        push_base64url(out, &self.0);
    }

    /// Parses the 22-character form back, for admin tools.
    pub fn decode(text: &str) -> Option<Self> {
        let mut id = [0u8; ID_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(text.as_bytes(), &mut id) {
            Ok(ID_BYTES) if text.len() == 22 => Some(SessionId(id)),
            _ => None,
        }
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.0
    }

    /// The first 8 characters, enough to tell sessions apart in a log.
    pub fn short(&self) -> String {
        let mut s = self.encode();
        s.truncate(8);
        s
    }
}

impl From<[u8; ID_BYTES]> for SessionId {
    /// An id from its raw bytes, for stores and admin tools that keep them.
    fn from(bytes: [u8; ID_BYTES]) -> Self {
        SessionId(bytes)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.encode())
    }
}

/// Appends `bytes` (at most 48) to `out` in unpadded base64url.
///
/// `Engine::encode_string` goes through a chunked writer that checks
/// UTF-8 per chunk; on the paths that sign cookies and name keys, a
/// stack buffer costs a third of its instructions.
pub(crate) fn push_base64url(out: &mut String, bytes: &[u8]) {
    let mut buf = [0u8; 64];
    match URL_SAFE_NO_PAD.encode_slice(bytes, &mut buf) {
        Ok(n) => match std::str::from_utf8(&buf[..n]) {
            Ok(text) => out.push_str(text),
            Err(_) => URL_SAFE_NO_PAD.encode_string(bytes, out),
        },
        // Longer than the buffer: no caller passes that, but stay correct.
        Err(_) => URL_SAFE_NO_PAD.encode_string(bytes, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_into_a_string_matches_the_engine_at_every_length() {
        // 0 to 60 bytes: past the stack buffer's 48 too.
        let bytes: Vec<u8> = (0u8..60).map(|b| b.wrapping_mul(37)).collect();
        for len in 0..=bytes.len() {
            let mut out = String::from("x:");
            push_base64url(&mut out, &bytes[..len]);
            assert_eq!(out, format!("x:{}", URL_SAFE_NO_PAD.encode(&bytes[..len])));
        }
    }

    #[test]
    fn tokens_are_256_bits_and_distinct() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a, b);
        assert_eq!(a.encode().len(), TOKEN_B64_LEN);
        assert_eq!(Token::decode(a.encode().as_bytes()), Some(a));
    }

    #[test]
    fn batched_tokens_never_repeat_across_refills() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..BATCH_TOKENS * 5 + 3 {
            let t = Token::generate();
            assert_ne!(t.bytes, [0; TOKEN_BYTES], "an unfilled slot was handed out");
            assert!(seen.insert(t.bytes), "a token repeated");
        }
        // Threads draw from their own batches, and never the same bytes.
        let other: Vec<[u8; TOKEN_BYTES]> = std::thread::spawn(|| {
            (0..BATCH_TOKENS + 1)
                .map(|_| Token::generate().bytes)
                .collect()
        })
        .join()
        .unwrap();
        assert!(other.iter().all(|t| seen.insert(*t)));
    }

    /// Without the fork check, parent and child would hand out the same
    /// next token from their copies of the batch.
    #[cfg(unix)]
    #[test]
    fn a_forked_child_never_repeats_its_parents_tokens() {
        let _ = Token::generate(); // fills this thread's batch
        let mut fds = [0; 2];
        // SAFETY: plain POSIX calls on a pipe this test owns. The child
        // only draws a token (no allocation, no lock), writes it, and
        // leaves with `_exit`, as a child of a threaded process must.
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            let pid = libc::fork();
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let t = Token::generate();
                libc::write(fds[1], t.bytes.as_ptr().cast(), TOKEN_BYTES);
                libc::_exit(0);
            }
            let parent = Token::generate();
            let mut child = [0u8; TOKEN_BYTES];
            let n = libc::read(fds[0], child.as_mut_ptr().cast(), TOKEN_BYTES);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            libc::close(fds[0]);
            libc::close(fds[1]);
            assert_eq!(n, TOKEN_BYTES as isize);
            assert_ne!(child, parent.bytes);
        }
    }

    #[test]
    fn id_is_derived_not_equal() {
        let t = Token::generate();
        let id = t.id();
        assert_ne!(&t.as_bytes()[..16], id.as_bytes());
        assert_eq!(id, t.id());
        assert_eq!(SessionId::decode(&id.encode()), Some(id));
        assert_eq!(id.encode().len(), 22);
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = Token::generate();
        let shown = format!("{t:?}");
        assert!(!shown.contains(&t.encode()));
        assert!(shown.contains(&t.id().short()));
    }

    #[test]
    fn decode_rejects_wrong_lengths_and_alphabet() {
        assert_eq!(Token::decode(b""), None);
        assert_eq!(Token::decode(&[b'A'; 42]), None);
        assert_eq!(Token::decode(&[b'A'; 44]), None);
        assert_eq!(Token::decode(&[b'+'; 43]), None);
        assert_eq!(SessionId::decode("short"), None);
    }
}
