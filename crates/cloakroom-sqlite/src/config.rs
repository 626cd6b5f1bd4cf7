//! Where the database file is, and how the store uses it.

use cloakroom::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The settings of a [`SqliteStore`](crate::SqliteStore).
///
/// ```
/// use cloakroom_sqlite::SqliteConfig;
/// let config = SqliteConfig::from_url("sqlite://sessions.db")?;
/// assert_eq!(config.path(), std::path::Path::new("sessions.db"));
/// let absolute = SqliteConfig::from_url("sqlite:///var/lib/app/sessions.db")?;
/// assert_eq!(absolute.path(), std::path::Path::new("/var/lib/app/sessions.db"));
/// # Ok::<(), cloakroom::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    pub(crate) path: PathBuf,
    pub(crate) readers: usize,
    pub(crate) busy_timeout: Duration,
    pub(crate) cleanup_interval: Option<Duration>,
    pub(crate) cleanup_batch: u32,
}

impl SqliteConfig {
    /// The database at `path`, created if missing.
    pub fn new(path: impl AsRef<Path>) -> SqliteConfig {
        SqliteConfig {
            path: path.as_ref().to_owned(),
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            cleanup_interval: Some(Duration::from_secs(300)),
            cleanup_batch: 1000,
        }
    }

    /// `sqlite://PATH`: `sqlite://sessions.db` is relative to the working
    /// directory, `sqlite:///var/lib/app/sessions.db` absolute.
    pub fn from_url(url: &str) -> Result<SqliteConfig> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| Error::Config(format!("{url:?} is not a sqlite:// URL")))?;
        if path.is_empty() || path.contains('?') {
            return Err(Error::Config(format!(
                "{url:?}: give a file, as sqlite://sessions.db or sqlite:///abs/path.db \
                 (no query parameters)"
            )));
        }
        Ok(SqliteConfig::new(path))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many connections serve reads beside the one that writes
    /// (default 4, at least 1). SQLite in WAL mode reads while it writes.
    pub fn readers(mut self, readers: usize) -> SqliteConfig {
        self.readers = readers.max(1);
        self
    }

    /// How long a call waits for another process's write lock on the same
    /// file before it fails with [`Error::Timeout`] (default 5 s). SQLite
    /// waits at most about 24.8 days (2^31 ms); a longer wait is cut to
    /// that.
    pub fn busy_timeout(mut self, timeout: Duration) -> SqliteConfig {
        self.busy_timeout = timeout;
        self
    }

    /// How often the background task deletes expired rows (default five
    /// minutes); `None` turns it off. Expired rows are never returned
    /// either way.
    pub fn cleanup_interval(mut self, every: Option<Duration>) -> SqliteConfig {
        self.cleanup_interval = every.filter(|d| !d.is_zero());
        self
    }

    /// The most rows one cleanup statement deletes (default 1000), so the
    /// write lock is never held long.
    pub fn cleanup_batch(mut self, rows: u32) -> SqliteConfig {
        self.cleanup_batch = rows.max(1);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_that_name_no_file_are_config_errors() {
        for url in [
            "sqlite://",
            "sqlite:",
            "postgres://x",
            "sqlite://a.db?mode=ro",
        ] {
            assert!(
                matches!(SqliteConfig::from_url(url), Err(Error::Config(_))),
                "{url}"
            );
        }
    }
}
