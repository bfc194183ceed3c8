//! Readiness: whether the first service list has been fetched, whether every stream restored
//! from the state file has caught up, and why not; and the service-list refresh behind it (last
//! success, last error) for the status page.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The service-list refresh as the status page shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListRefresh {
    /// Unix time of the last successful refresh.
    pub last_success: Option<f64>,
    /// The last failed refresh: what went wrong (no secrets) and its unix time.
    pub last_error: Option<(String, f64)>,
}

/// Readiness as `/readyz` reports it.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    reason: RwLock<String>,
    list: Mutex<ListRefresh>,
    /// Restored streams that have not caught up yet (see [`CatchingUp`]).
    catching_up: Arc<AtomicUsize>,
}

impl Health {
    /// Marks the exporter ready (first service list fetched) or not, with the reason shown
    /// by `/readyz` while not ready.
    pub fn set(&self, ready: bool, reason: &str) {
        *self.reason.write().unwrap_or_else(|p| p.into_inner()) = reason.to_string();
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// `(ready, reason)`. Ready needs the service list and no restored stream still catching
    /// up: until then the exporter serves less than it will a few seconds later.
    pub fn get(&self) -> (bool, String) {
        let ready = self.ready.load(Ordering::SeqCst);
        let reason = self.reason.read().unwrap_or_else(|p| p.into_inner()).clone();
        let catching_up = self.catching_up.load(Ordering::SeqCst);
        if ready && catching_up > 0 {
            let s = if catching_up == 1 { "" } else { "s" };
            return (
                false,
                format!("catching up: {catching_up} stream{s} restored from the state file not yet at the present"),
            );
        }
        (ready, reason)
    }

    /// One more stream catching up; readiness waits until the returned token is dropped.
    pub fn catching_up(&self) -> CatchingUp {
        self.catching_up.fetch_add(1, Ordering::SeqCst);
        CatchingUp(self.catching_up.clone())
    }

    /// Streams catching up now.
    pub fn catching_up_count(&self) -> usize {
        self.catching_up.load(Ordering::SeqCst)
    }

    /// Records a successful service-list refresh at `now` (unix seconds).
    pub fn list_refreshed(&self, now: f64) {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).last_success = Some(now);
    }

    /// Records a failed service-list refresh at `now`; the last error is kept after a
    /// recovery (its time tells whether it is current).
    pub fn list_failed(&self, error: &str, now: f64) {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).last_error = Some((error.to_string(), now));
    }

    /// The service-list refresh so far.
    pub fn list_refresh(&self) -> ListRefresh {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A restored stream that has not caught up yet. Dropping it (caught up, or the stream or its
/// service went away) releases readiness, so no path can leave `/readyz` stuck on a stream
/// that no longer exists.
#[derive(Debug)]
pub struct CatchingUp(Arc<AtomicUsize>);

impl Drop for CatchingUp {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catching_up_holds_readiness_until_every_token_is_dropped() {
        let h = Health::default();
        h.set(true, "");
        let a = h.catching_up();
        let b = h.catching_up();
        let (ready, reason) = h.get();
        assert!(!ready);
        assert!(reason.starts_with("catching up: 2 streams"), "{reason}");
        drop(a);
        assert!(h.get().1.starts_with("catching up: 1 stream "));
        drop(b);
        assert_eq!(h.get(), (true, String::new()));
        h.set(false, "no list");
        let _c = h.catching_up();
        assert_eq!(h.get(), (false, "no list".to_string()), "the list's reason comes first");
    }
}
