//! Which runtime thread a store call runs on.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Numbers the threads of current-thread runtimes, in the order of their
/// first question.
static NEXT: AtomicUsize = AtomicUsize::new(0);

const UNKNOWN: usize = usize::MAX;
const MULTI_THREAD: usize = usize::MAX - 1;

thread_local! {
    static THIS_THREAD: Cell<usize> = const { Cell::new(UNKNOWN) };
}

/// The calling thread's number if it runs a tokio current-thread runtime
/// (as each actix-web worker does), or `None` on a multi-thread runtime.
///
/// The first answer a thread gets inside a runtime is its answer for
/// good, even if it later runs a runtime of the other kind; outside any
/// runtime, a thread that has not asked inside one gets `None`. Numbers
/// start at 0, in the order threads first ask, and are not reused after
/// a thread exits: a process that keeps starting new current-thread
/// runtime threads ends up with threads sharing a store's slots.
///
/// A store keeps connections per such thread with it: a
/// socket's readiness, and a multiplexed connection's own task, are
/// driven by the runtime that made them, and a current-thread runtime
/// drives them only when its thread is free. A call on another thread's
/// connection waits for that thread (or for ever, if it is blocked).
///
/// ```
/// use cloakroom::store::current_thread_number;
///
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let number = runtime.block_on(async { current_thread_number() });
/// assert!(number.is_some());
/// assert_eq!(runtime.block_on(async { current_thread_number() }), number);
/// assert_eq!(current_thread_number(), number, "a thread keeps its answer");
/// ```
pub fn current_thread_number() -> Option<usize> {
    THIS_THREAD.with(|cell| {
        let mut known = cell.get();
        if known == UNKNOWN {
            // Outside a runtime: not remembered, the thread may enter one.
            let flavor = tokio::runtime::Handle::try_current().ok()?.runtime_flavor();
            known = match flavor {
                tokio::runtime::RuntimeFlavor::CurrentThread => {
                    NEXT.fetch_add(1, Ordering::Relaxed)
                }
                _ => MULTI_THREAD,
            };
            cell.set(known);
        }
        (known != MULTI_THREAD).then_some(known)
    })
}
