//! Size limits on what a session may hold.

use crate::error::{Error, Result};

/// Limits checked when a handler writes to a session. A write over a limit
/// fails with [`Error::TooLarge`] and records nothing.
///
/// ```
/// use cloakroom::Limits;
/// let limits = Limits::default().max_value_bytes(4096);
/// assert_eq!(limits.value_bytes(), 4096);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    max_name_bytes: usize,
    max_value_bytes: usize,
}

impl Default for Limits {
    /// Names up to 256 bytes, values up to 64 KiB of JSON.
    fn default() -> Self {
        Limits {
            max_name_bytes: 256,
            max_value_bytes: 64 * 1024,
        }
    }
}

impl Limits {
    /// The longest name, in bytes.
    pub fn max_name_bytes(mut self, n: usize) -> Self {
        self.max_name_bytes = n;
        self
    }

    /// The largest value, in bytes of JSON.
    pub fn max_value_bytes(mut self, n: usize) -> Self {
        self.max_value_bytes = n;
        self
    }

    /// The configured longest name.
    pub fn name_bytes(&self) -> usize {
        self.max_name_bytes
    }

    /// The configured largest value.
    pub fn value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    pub(crate) fn check(&self, name: &str, json: &str) -> Result<()> {
        if name.len() > self.max_name_bytes {
            return Err(Error::TooLarge {
                what: "session name".to_owned(),
                size: name.len(),
                limit: self.max_name_bytes,
            });
        }
        if json.len() > self.max_value_bytes {
            return Err(Error::TooLarge {
                what: format!("value of {name:?}"),
                size: json.len(),
                limit: self.max_value_bytes,
            });
        }
        Ok(())
    }
}
