//! Panics caught at thread boundaries: an HTTP request, a poll.
//!
//! A panic in one request or one poll must never take its thread down for good (a tiny_http
//! worker that dies is never replaced). Threads that serve many units of work run each unit
//! under [`catch`]; the process-wide hook installed by [`install_hook`] records where the
//! panic happened instead of printing it, so the catcher can log each distinct location once
//! ([`PanicLog`]) rather than once per request. Panics outside [`catch`] are printed as usual.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static LAST: RefCell<Option<Caught>> = const { RefCell::new(None) };
}

/// A caught panic: where it happened and what it said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caught {
    /// `file:line`.
    pub location: String,
    /// The panic message.
    pub message: String,
}

/// Installs the hook that lets [`catch`] record panics quietly (once per process: an
/// exporter started again in the same process keeps the one hook).
pub fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(install);
}

fn install() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if CATCHING.with(Cell::get) {
            let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            let message = payload_text(info.payload());
            LAST.with(|l| *l.borrow_mut() = Some(Caught { location, message }));
        } else {
            default(info);
        }
    }));
}

/// Runs `f`, turning a panic into an error. State that `f` shares with other threads must stay
/// consistent across a panic (every shared lock in this crate ignores poisoning, and writers
/// that must be all-or-nothing roll back in their own guards).
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Caught> {
    let outer = CATCHING.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(outer));
    result.map_err(|payload| {
        LAST.with(|l| l.borrow_mut().take())
            .unwrap_or_else(|| Caught { location: "unknown location".into(), message: payload_text(&*payload) })
    })
}

/// Goes on with a panic that [`catch`] caught on another thread (a helper thread the caller
/// waited for), so the catcher up this thread's stack sees where it really happened.
pub fn resume(caught: Caught) -> ! {
    if !CATCHING.with(Cell::get) {
        panic!("{} (at {})", caught.message, caught.location);
    }
    let message = caught.message.clone();
    LAST.with(|l| *l.borrow_mut() = Some(caught));
    std::panic::resume_unwind(Box::new(message))
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic payload".to_string()
    }
}

/// Logs each distinct panic location once (later ones at debug level), so a request that
/// panics on every scrape cannot flood the log.
#[derive(Debug, Default)]
pub struct PanicLog {
    seen: Mutex<HashSet<String>>,
}

impl PanicLog {
    /// Logs `caught` as an error the first time its location is seen; `what` names the work
    /// that panicked and `after` what happens next.
    pub fn report(&self, what: &str, caught: &Caught, after: &str) {
        let first = self.seen.lock().unwrap_or_else(|p| p.into_inner()).insert(caught.location.clone());
        if first {
            log::error!(
                "{what} panicked at {}: {}; {after} (further panics at this location are logged at debug level)",
                caught.location,
                caught.message
            );
        } else {
            log::debug!("{what} panicked at {}: {}; {after}", caught.location, caught.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_returns_location_and_message() {
        install_hook();
        let r: Result<(), Caught> = catch(|| panic!("boom {}", 7));
        let c = r.unwrap_err();
        assert_eq!(c.message, "boom 7");
        assert!(c.location.starts_with("src/util/panics.rs:"), "{}", c.location);
        assert_eq!(catch(|| 5).unwrap(), 5);
    }

    #[test]
    fn a_panic_resumed_from_another_thread_keeps_its_location() {
        install_hook();
        let on_thread = std::thread::spawn(|| catch(|| panic!("far away")).unwrap_err()).join().unwrap();
        let here = catch(|| resume(on_thread.clone())).unwrap_err();
        assert_eq!(here, on_thread);
    }
}
