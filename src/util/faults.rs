//! Debug builds only: panics injected on purpose inside guarded sections (a TLS handshake
//! slot, a read turn, a DNS lookup in flight), so end-to-end tests can show that a panic
//! there gives everything back and the next connections and polls work.
//!
//! `FASTLY_EXPORTER_DEBUG_PANIC_IN=<site>:<n>[,<site>:<n>...]` makes the next `n` passes
//! through each named site panic. Each site is compiled in only where a thread that catches
//! panics (a poller) runs it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Panics if `site` still has injected panics left.
pub fn hit(site: &str) {
    static PLAN: OnceLock<Vec<(String, AtomicU64)>> = OnceLock::new();
    let plan = PLAN.get_or_init(|| {
        let v = std::env::var("FASTLY_EXPORTER_DEBUG_PANIC_IN").unwrap_or_default();
        v.split(',')
            .filter_map(|item| {
                let (name, n) = item.trim().rsplit_once(':')?;
                Some((name.to_string(), AtomicU64::new(n.parse().ok()?)))
            })
            .collect()
    });
    let left = plan.iter().find(|(name, _)| name == site).map(|(_, n)| n);
    if left.is_some_and(|n| n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()) {
        panic!("injected test panic in {site}");
    }
}
