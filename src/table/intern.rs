//! A tiny process-wide string interner for datacenter, origin and domain names.
//!
//! A thousand services report from the same hundred datacenters; sharing one `Arc<str>` per
//! name keeps rows small and makes equal names cheap to compare.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

/// Returns the shared copy of `s`, creating it on first sight.
pub fn intern(s: &str) -> Arc<str> {
    static POOL: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
    let pool = POOL.get_or_init(Default::default);
    // A poisoned pool only means another thread panicked mid-insert; the set is still valid.
    let mut set = pool.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = set.get(s) {
        return found.clone();
    }
    let new: Arc<str> = Arc::from(s);
    set.insert(new.clone());
    new
}
