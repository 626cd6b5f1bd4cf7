//! `cloakroom sessions`: list and end users' sessions in the configured
//! store, the admin half of the session inventory.

use crate::CliError;
use clap::{ArgGroup, Args, Subcommand};
use cloakroom::{Error, KeyRing, SessionAdmin, SessionId, SessionInfo, SessionManager, Timestamp};
use cloakroom_config::Config;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

/// Options shared by every `cloakroom sessions` command: the store, as
/// `cloakroom serve` finds it.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Store URL, overriding the configuration (see `cloakroom serve`).
    #[arg(long, global = true)]
    pub store: Option<String>,
    /// Configuration file (TOML). `CLOAKROOM_*` variables override it.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
}

/// `cloakroom sessions …`
#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: SessionsCommand,
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// List a user's live sessions.
    List {
        /// The user id the app bound the sessions to.
        #[arg(long)]
        user: String,
        /// A JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End sessions: a user's (all, or all but one), one by id, or all.
    #[command(group(ArgGroup::new("which").required(true).args(["user", "id", "all"])))]
    End {
        /// End this user's sessions.
        #[arg(long)]
        user: Option<String>,
        /// With --user: keep this session (its id, as `list` shows it).
        // Ids are base64url: one in 64 starts with `-`.
        #[arg(long, requires = "user", allow_hyphen_values = true)]
        except: Option<String>,
        /// End the session with this id.
        #[arg(long, allow_hyphen_values = true)]
        id: Option<String>,
        /// End every session of every user.
        #[arg(long)]
        all: bool,
    },
    /// Count live sessions.
    Count,
}

/// Runs a `cloakroom sessions` command, printing to stdout.
pub async fn sessions(args: SessionsArgs) -> Result<(), CliError> {
    let admin = connect(&args.store).await?;
    match args.command {
        SessionsCommand::List { user, json } => {
            let list = admin.list(&user).await?;
            if list.is_empty() && !json {
                return Err(CliError::NotFound(format!(
                    "no live sessions for user {user:?}"
                )));
            }
            if json {
                println!("{}", json_list(&list));
            } else {
                print!("{}", table(&list));
            }
        }
        SessionsCommand::End {
            user: Some(user),
            except,
            ..
        } => {
            let ended = match except {
                Some(keep) => admin.end_user_except(&user, &parse_id(&keep)?).await?,
                None => admin.end_user(&user).await?,
            };
            if ended == 0 {
                return Err(CliError::NotFound(format!(
                    "no live sessions to end for user {user:?}"
                )));
            }
            println!("ended {ended} session(s) of user {user:?}");
        }
        SessionsCommand::End { id: Some(id), .. } => {
            if !admin.end(&parse_id(&id)?).await? {
                return Err(CliError::NotFound(format!("no live session {id}")));
            }
            println!("ended session {id}");
        }
        SessionsCommand::End { all: true, .. } => {
            let ended = admin.end_all().await?;
            println!("ended {ended} session(s)");
        }
        // clap requires one of the three; this is only for completeness.
        SessionsCommand::End { .. } => {
            return Err(Error::Config("say --user, --id or --all".to_owned()).into());
        }
        SessionsCommand::Count => println!("{}", admin.count().await?),
    }
    Ok(())
}

/// The admin handle over the configured store. Admin commands sign
/// nothing, so no secret is needed.
pub(crate) async fn connect(args: &StoreArgs) -> Result<SessionAdmin, Error> {
    let config = load(args)?;
    admin(&config).await
}

/// The configuration, with `--store` over `storage.url`.
pub(crate) fn load(args: &StoreArgs) -> Result<Config, Error> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(url) = &args.store {
        config.storage.url = Some(url.clone());
    }
    Ok(config)
}

/// The admin handle over `config`'s store. Not the memory store: it
/// lives inside the server's process, and a new one here would be empty.
pub(crate) async fn admin(config: &Config) -> Result<SessionAdmin, Error> {
    if config.effective_engine()? == cloakroom_config::Engine::Memory {
        return Err(Error::Config(
            "the memory store lives inside the server's process, so no other process \
             can see its sessions: give --store (or storage.url) the server's Redis, \
             Memcached, PostgreSQL or SQLite store"
                .to_owned(),
        ));
    }
    let store = config.store().await?;
    let manager = SessionManager::builder(store, KeyRing::random())
        .expiry(config.expiry_policy())
        .limits(config.limits())
        .build()?;
    Ok(manager.admin())
}

fn parse_id(text: &str) -> Result<SessionId, Error> {
    SessionId::decode(text)
        .ok_or_else(|| Error::Config(format!("{text:?} is not a session id (22 characters)")))
}

/// `t` as RFC 3339 in UTC. Past the year 9999, which RFC 3339 cannot
/// write (a deadline a store saturated, or a corrupt record), it says so
/// instead of failing.
pub(crate) fn rfc3339(t: Timestamp) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let at = UNIX_EPOCH.checked_add(Duration::from_millis(t.0));
    match at.map(|at| write!(text, "{}", humantime::format_rfc3339_seconds(at))) {
        Some(Ok(())) => text,
        _ => "after 9999-12-31T23:59:59Z".to_owned(),
    }
}

fn json_list(list: &[SessionInfo]) -> String {
    let items: Vec<serde_json::Value> = list
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id.to_string(),
                "created": rfc3339(s.created),
                "last_seen": rfc3339(s.last_seen),
                "idle_deadline": rfc3339(s.idle_deadline),
                "absolute_deadline": rfc3339(s.absolute_deadline),
                "user_agent": s.client.user_agent,
                "ip": s.client.ip,
            })
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

fn table(list: &[SessionInfo]) -> String {
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|s| {
            [
                s.id.to_string(),
                rfc3339(s.created),
                rfc3339(s.last_seen),
                rfc3339(s.idle_deadline),
                s.client.ip.clone().unwrap_or_default(),
                s.client.user_agent.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = [
        "ID",
        "CREATED",
        "LAST SEEN",
        "IDLE DEADLINE",
        "IP",
        "USER AGENT",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 6]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_past_what_rfc3339_writes_are_named_not_a_panic() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(Timestamp(253_402_300_799_000)),
            "9999-12-31T23:59:59Z"
        );
        // A saturated deadline, and the first millisecond of year 10000.
        for t in [u64::MAX, 253_402_300_800_000] {
            assert_eq!(rfc3339(Timestamp(t)), "after 9999-12-31T23:59:59Z");
        }
    }
}
