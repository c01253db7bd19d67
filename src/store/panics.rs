//! The last line of defence around zarrs: a call into zarrs that panics (zarrs trusts some of what
//! it reads, e.g. an index it cannot be shown unchecked) becomes an error for the caller to name
//! the chunk with, instead of taking dsk down. The main fix is never to hand zarrs such bytes (see
//! [`super::limits`]); this catches what that misses.
//!
//! While a guarded call runs, panic messages are kept from stderr (the error says it in one line):
//! the process-wide hook is wrapped once, and delegates to the previous hook whenever no guarded
//! call is running. A panic elsewhere at that moment still unwinds and is reported by its catcher
//! (exec's task runner) with its message; only the hook's line is dropped.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

static GUARDED: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();

fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.load(Ordering::SeqCst) == 0 {
                previous(info);
            }
        }));
    });
}

struct Guard;

impl Guard {
    fn new() -> Guard {
        GUARDED.fetch_add(1, Ordering::SeqCst);
        Guard
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        GUARDED.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Run `f`; a panic inside it becomes `Err(its message)`.
pub fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    install_hook();
    let _g = Guard::new();
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| text(&p))
}

fn text(p: &Box<dyn Any + Send>) -> String {
    let s = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_becomes_an_error() {
        let r: Result<u8, String> = super::guarded(|| {
            let v: Vec<u8> = vec![];
            v[3]
        });
        assert!(r.expect_err("caught").contains("out of bounds"));
        assert_eq!(super::guarded(|| 7), Ok(7));
    }
}
