//! What one request changed: the unit a store applies atomically.
//!
//! A patch names what changed instead of carrying the whole record. That is
//! what keeps concurrent requests from losing each other's updates: two
//! requests that set different names both keep their change. For the same
//! name, the last patch applied wins.

use crate::limits::SizeLimits;
use crate::token::SessionId;

/// One change to one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// Store this JSON text under the name.
    Set(&'a str),
    /// Remove the name.
    Remove,
}

/// The changes one request made to one session, applied by
/// [`Store::apply`](crate::Store::apply) in one atomic step, in this order:
///
/// 1. if [`creates`](Patch::creates): the session must not exist, and is
///    created; otherwise it must exist, or the store answers
///    [`Applied::Gone`](crate::Applied::Gone);
/// 2. if [`clears`](Patch::clears): every name is removed (notifications
///    stay);
/// 3. each [`change`](Patch::changes) is applied;
/// 4. each [notification](Patch::notifications) is stored;
/// 5. if [`renames_to`](Patch::renames_to) is set, the session and its
///    notifications move to the new id, keeping the creation time and the
///    absolute deadline; the old id stops existing; if
///    [`restarts_lifetime`](Patch::restarts_lifetime), the absolute
///    deadline becomes `now + absolute` (a session given its own expiry);
/// 6. the idle deadline is pushed to `now + idle`, capped by the absolute
///    deadline;
/// 7. if [`ends_if_empty`](Patch::ends_if_empty) and the session now holds
///    no name and no notification, it is deleted, and the answer is
///    [`Applied::Ended`](crate::Applied::Ended). (Redis with a separate
///    notifications database looks there in a second step, and keeps an
///    empty session that the same patch renames.)
///
/// An empty patch only does step 6: it is a touch. A patch that sets names
/// and carries [`size_limits`](Patch::size_limits) is refused with
/// [`Error::TooLarge`](crate::Error::TooLarge), writing nothing, if the
/// session would go over them.
///
/// ```
/// use cloakroom::{Change, Patch};
/// let mut patch = Patch::default();
/// patch.set("login", r#""alice""#.to_owned());
/// patch.remove("cart");
/// let changes: Vec<_> = patch.changes().collect();
/// assert_eq!(changes, [("cart", Change::Remove), ("login", Change::Set(r#""alice""#))]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patch {
    create: bool,
    clear: bool,
    changes: ByName<Option<String>>,
    notifications: ByName<String>,
    rename_to: Option<SessionId>,
    limits: Option<SizeLimits>,
    end_if_empty: bool,
    restart_lifetime: bool,
}

impl Patch {
    /// A patch that only renames the session.
    pub fn rename(to: SessionId) -> Self {
        Patch {
            rename_to: Some(to),
            ..Patch::default()
        }
    }

    /// Records `name = json`; `json` must be valid JSON text.
    pub fn set(&mut self, name: impl Into<String>, json: String) {
        self.changes.insert(name.into(), Some(json));
    }

    /// Drops any change to `name` from the patch (neither set nor
    /// removed).
    pub fn forget(&mut self, name: &str) {
        self.changes.remove(name);
    }

    /// Records the removal of `name`.
    pub fn remove(&mut self, name: impl Into<String>) {
        self.changes.insert(name.into(), None);
    }

    /// Records removing every name, and drops earlier changes.
    pub fn clear(&mut self) {
        self.clear = true;
        self.changes.clear();
    }

    /// Records a notification (a read-once value).
    pub fn notify(&mut self, name: impl Into<String>, json: String) {
        self.notifications.insert(name.into(), json);
    }

    /// Marks the patch as creating a new session.
    pub fn create(&mut self) {
        self.create = true;
    }

    /// Marks the patch as renaming the session to `to`.
    pub fn rename_to(&mut self, to: SessionId) {
        self.rename_to = Some(to);
    }

    /// Drops the rename, when the patch goes to a new session instead.
    pub(crate) fn cancel_rename(&mut self) {
        self.rename_to = None;
    }

    /// Asks the store to end the session if the patch leaves it empty:
    /// no names and no notifications (step 7 above).
    pub fn end_if_empty(&mut self) {
        self.end_if_empty = true;
    }

    /// Whether the session ends when the patch leaves it empty.
    pub fn ends_if_empty(&self) -> bool {
        self.end_if_empty
    }

    /// Asks the store to move an existing session's absolute deadline to
    /// `now + absolute` of the operation's [`Expiry`](crate::Expiry).
    pub fn restart_lifetime(&mut self) {
        self.restart_lifetime = true;
    }

    /// Whether the absolute deadline restarts (step 5).
    pub fn restarts_lifetime(&self) -> bool {
        self.restart_lifetime
    }

    /// Bounds the session must stay within after this patch.
    pub fn limit(&mut self, limits: SizeLimits) {
        self.limits = Some(limits);
    }

    /// The bounds to check, if any.
    pub fn size_limits(&self) -> Option<SizeLimits> {
        self.limits
    }

    /// Whether the session must be created (and must not exist yet).
    pub fn creates(&self) -> bool {
        self.create
    }

    /// Whether every existing name is removed first.
    pub fn clears(&self) -> bool {
        self.clear
    }

    /// The per-name changes, in name order.
    pub fn changes(&self) -> impl ExactSizeIterator<Item = (&str, Change<'_>)> {
        self.changes.0.iter().map(|(k, v)| {
            let change = match v {
                Some(json) => Change::Set(json),
                None => Change::Remove,
            };
            (k.as_str(), change)
        })
    }

    /// The notifications to store, in name order.
    pub fn notifications(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.notifications
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The id the session moves to, if the patch renames it.
    pub fn renames_to(&self) -> Option<&SessionId> {
        self.rename_to.as_ref()
    }

    /// True when the patch changes no data: applying it only touches (or,
    /// with `creates`/`renames_to`, creates or renames) the session.
    pub fn is_empty(&self) -> bool {
        !self.clear && self.changes.is_empty() && self.notifications.is_empty()
    }

    /// The pending change to `name`: `Some(Some(json))` when set,
    /// `Some(None)` when removed (or cleared), `None` when this patch says
    /// nothing about it.
    pub(crate) fn lookup(&self, name: &str) -> Option<Option<&str>> {
        match self.changes.get(name) {
            Some(v) => Some(v.as_deref()),
            None if self.clear => Some(None),
            None => None,
        }
    }

    /// Removes and returns a notification recorded in this patch.
    pub(crate) fn take_notification(&mut self, name: &str) -> Option<String> {
        self.notifications.remove(name)
    }
}

/// Values by name, kept sorted by name. A patch holds a few names: a
/// sorted `Vec` costs one small allocation where a `BTreeMap` allocates a
/// half-kilobyte node, on every request that writes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ByName<V>(Vec<(String, V)>);

impl<V> Default for ByName<V> {
    fn default() -> Self {
        ByName(Vec::new())
    }
}

impl<V> ByName<V> {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    fn insert(&mut self, name: String, value: V) {
        match self.find(&name) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    fn remove(&mut self, name: &str) -> Option<V> {
        self.find(name).ok().map(|i| self.0.remove(i).1)
    }

    fn get(&self, name: &str) -> Option<&V> {
        self.find(name).ok().map(|i| &self.0[i].1)
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_change_to_a_name_replaces_the_earlier() {
        let mut p = Patch::default();
        p.set("a", "1".into());
        p.remove("a");
        assert_eq!(p.lookup("a"), Some(None));
        p.set("a", "2".into());
        assert_eq!(p.lookup("a"), Some(Some("2")));
        assert_eq!(p.changes().len(), 1);
    }

    #[test]
    fn clear_drops_earlier_changes_and_hides_stored_names() {
        let mut p = Patch::default();
        p.set("a", "1".into());
        p.clear();
        assert!(p.clears());
        assert_eq!(p.changes().len(), 0);
        assert_eq!(p.lookup("a"), Some(None));
        assert_eq!(p.lookup("stored"), Some(None));
        p.set("b", "2".into());
        assert_eq!(p.lookup("b"), Some(Some("2")));
        assert!(!p.is_empty());
    }

    #[test]
    fn changes_come_in_name_order_whatever_the_order_of_calls() {
        let mut p = Patch::default();
        for name in ["m", "b", "z", "a", "b"] {
            p.set(name, "1".into());
        }
        p.remove("c");
        p.forget("z");
        let names: Vec<&str> = p.changes().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "c", "m"]);
        assert_eq!(p.lookup("c"), Some(None));
        assert_eq!(p.lookup("z"), None);
    }

    #[test]
    fn empty_patch_is_a_touch() {
        let p = Patch::default();
        assert!(p.is_empty());
        assert_eq!(p.lookup("a"), None);
        let mut n = Patch::default();
        n.notify("flash", "\"hi\"".into());
        assert!(!n.is_empty());
        assert_eq!(n.take_notification("flash").as_deref(), Some("\"hi\""));
        assert!(n.is_empty());
    }
}
