//! The string interner for datacenter, origin and domain names, a handle owned by the
//! registry.
//!
//! A thousand services report from the same hundred datacenters; sharing one `Arc<str>` per
//! name keeps rows small and makes equal names cheap to compare. Names nobody uses any more
//! (their rows expired or their service left) are dropped by [`Interner::sweep`], so origins
//! and domains that come and go do not grow it for the life of the process.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// Shared names.
#[derive(Debug, Default)]
pub struct Interner {
    names: Mutex<HashSet<Arc<str>>>,
}

impl Interner {
    fn lock(&self) -> MutexGuard<'_, HashSet<Arc<str>>> {
        // A poisoned set only means another thread panicked mid-insert; the set is still valid.
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns the shared copy of `s`, creating it on first sight.
    pub fn intern(&self, s: &str) -> Arc<str> {
        let mut set = self.lock();
        if let Some(found) = set.get(s) {
            return found.clone();
        }
        let new: Arc<str> = Arc::from(s);
        set.insert(new.clone());
        new
    }

    /// Drops every name only the interner still holds; returns how many. A name handed out
    /// by [`Interner::intern`] is held by its caller until its row exists, so a sweep never
    /// drops a name about to be used.
    pub fn sweep(&self) -> usize {
        let mut set = self.lock();
        let before = set.len();
        set.retain(|name| Arc::strong_count(name) > 1);
        let kept = set.len();
        set.shrink_to(kept * 2);
        before - set.len()
    }

    /// Distinct names held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no name is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_nobody_holds_are_swept() {
        let i = Interner::default();
        let kept = i.intern("AMS");
        let again = i.intern("AMS");
        assert!(Arc::ptr_eq(&kept, &again));
        drop(i.intern("origin-1"));
        assert_eq!(i.len(), 2);
        assert_eq!(i.sweep(), 1);
        assert_eq!(i.len(), 1);
        drop((kept, again));
        assert_eq!(i.sweep(), 1);
        assert!(i.is_empty());
    }
}
