//! Running redb where a damaged file may make it panic, without its panic text reaching
//! stderr: the panic is caught and reported as a corrupt journal instead.
//!
//! redb checks a file's pages only in an integrity check; elsewhere a damaged page can
//! trip one of its assertions. The process's panic hook would print that panic's message
//! and location although the store catches it and returns an error that says what
//! happened. So the first journal opened installs a hook that stays silent for panics
//! raised inside [`quietly`] on the same thread, and hands every other panic to the hook
//! that was installed before it.

use std::cell::Cell;
use std::panic::{catch_unwind, UnwindSafe};
use std::sync::Once;

thread_local! {
    /// How many [`quietly`] calls this thread is inside.
    static QUIET: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f`, catching a panic (as `catch_unwind` does) without the panic hook printing
/// it.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T + UnwindSafe) -> std::thread::Result<T> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) == 0 {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(q.get() + 1));
    let result = catch_unwind(f);
    QUIET.with(|q| q.set(q.get() - 1));
    result
}
