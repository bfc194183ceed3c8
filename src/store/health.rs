//! Readiness: whether the first service list has been fetched, and why not.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Readiness as `/readyz` reports it.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    reason: RwLock<String>,
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
}
