//! Readiness: whether the first service list has been fetched, and why not; and the
//! service-list refresh behind it (last success, last error) for the status page.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

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
}

impl Health {
    /// Marks the exporter ready (first service list fetched) or not, with the reason shown
    /// by `/readyz` while not ready.
    pub fn set(&self, ready: bool, reason: &str) {
        *self.reason.write().unwrap_or_else(|p| p.into_inner()) = reason.to_string();
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// `(ready, reason)`.
    pub fn get(&self) -> (bool, String) {
        (self.ready.load(Ordering::SeqCst), self.reason.read().unwrap_or_else(|p| p.into_inner()).clone())
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
