//! Which runtime thread a store call runs on.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A thread that runs a tokio current-thread runtime, as each actix-web
/// worker does: see [`current_thread_runtime`].
///
/// A store keeps connections per such thread with it. A socket's
/// readiness, and a multiplexed connection's own task, are driven by the
/// runtime that made them, and a current-thread runtime drives them only
/// when its thread is free: a call on another thread's connection waits
/// for that thread (for ever, if it is blocked).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuntimeThread {
    index: usize,
    id: u64,
}

impl RuntimeThread {
    /// A small number, for a slot in a table of per-thread connections.
    /// Indexes start at 0 and stay dense: a thread that exits gives its
    /// index back, and the next new thread takes the smallest one free
    /// (so a restarted actix-web worker takes its predecessor's).
    pub fn index(self) -> usize {
        self.index
    }

    /// Never shared by two threads, even one after the other. A slot
    /// whose connection was made under another id belongs to a thread
    /// that has exited: its connections died with that thread's runtime,
    /// and should be made again.
    pub fn id(self) -> u64 {
        self.id
    }

    /// How many per-thread slots a store keeps: twice the CPUs. actix-web
    /// starts one worker per CPU, and twice that leaves room for the
    /// application's other threads; threads past it share, by
    /// [`index`](Self::index) modulo this.
    pub fn slots() -> usize {
        2 * std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// The next index never given out.
static NEXT_INDEX: AtomicUsize = AtomicUsize::new(0);
/// Indexes given back by threads that exited.
static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// The next id.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy)]
enum Known {
    Unknown,
    MultiThread,
    CurrentThread(RuntimeThread),
}

/// This thread's answer; gives its index back when the thread exits.
struct ThisThread(Cell<Known>);

impl Drop for ThisThread {
    fn drop(&mut self) {
        if let Known::CurrentThread(thread) = self.0.get() {
            FREE.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(thread.index);
        }
    }
}

thread_local! {
    static THIS_THREAD: ThisThread = const { ThisThread(Cell::new(Known::Unknown)) };
}

fn new_thread() -> RuntimeThread {
    let index = {
        let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
        let smallest = free
            .iter()
            .enumerate()
            .min_by_key(|(_, i)| **i)
            .map(|(at, _)| at);
        match smallest {
            Some(at) => free.swap_remove(at),
            None => NEXT_INDEX.fetch_add(1, Ordering::Relaxed),
        }
    };
    RuntimeThread {
        index,
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
    }
}

/// The calling thread, if it runs a tokio current-thread runtime (as each
/// actix-web worker does); `None` on a multi-thread runtime.
///
/// The first answer a thread gets inside a runtime is its answer for
/// good, even if it later runs a runtime of the other kind; outside any
/// runtime, a thread that has not asked inside one gets `None`.
///
/// ```
/// use cloakroom::store::current_thread_runtime;
///
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let thread = runtime.block_on(async { current_thread_runtime() });
/// assert!(thread.is_some());
/// assert_eq!(runtime.block_on(async { current_thread_runtime() }), thread);
/// assert_eq!(current_thread_runtime(), thread, "a thread keeps its answer");
/// ```
pub fn current_thread_runtime() -> Option<RuntimeThread> {
    // Not available while the thread's locals are being destroyed.
    THIS_THREAD
        .try_with(|this| {
            let known = match this.0.get() {
                Known::Unknown => {
                    // Outside a runtime: not remembered, the thread may
                    // enter one.
                    let flavor = tokio::runtime::Handle::try_current().ok()?.runtime_flavor();
                    let known = match flavor {
                        tokio::runtime::RuntimeFlavor::CurrentThread => {
                            Known::CurrentThread(new_thread())
                        }
                        _ => Known::MultiThread,
                    };
                    this.0.set(known);
                    known
                }
                known => known,
            };
            match known {
                Known::CurrentThread(thread) => Some(thread),
                _ => None,
            }
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_a_new_thread() -> Option<RuntimeThread> {
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async { current_thread_runtime() })
        })
        .join()
        .unwrap()
    }

    #[test]
    fn an_exited_threads_index_is_taken_again_under_a_new_id() {
        // Other tests of this binary may take indexes at the same time:
        // the index comes back to one of the threads that follow.
        let first = on_a_new_thread().unwrap();
        let later: Vec<RuntimeThread> = (0..64).filter_map(|_| on_a_new_thread()).collect();
        let again = later.iter().find(|t| t.index() == first.index());
        let again = again.unwrap_or_else(|| panic!("{first:?} not reused: {later:?}"));
        assert_ne!(again.id(), first.id());
    }

    #[test]
    fn a_multi_thread_runtime_has_no_number() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let inside =
            runtime.block_on(async { tokio::spawn(async { current_thread_runtime() }).await });
        assert_eq!(inside.unwrap(), None);
    }
}
