//! Allow/block lists of regular expressions, with the Go exporter's semantics.
//!
//! A name passes when it matches at least one allowlist entry (or the allowlist is empty) and
//! no blocklist entry: OR within a list, AND across lists. Used for service names and for full
//! metric names.

use regex::Regex;

/// A pair of allow/block regex lists.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    allow: Vec<Regex>,
    block: Vec<Regex>,
}

impl Filter {
    /// A filter from already-validated expressions (config validates them at start).
    pub fn new(allow: Vec<Regex>, block: Vec<Regex>) -> Filter {
        Filter { allow, block }
    }

    /// True when both lists are empty: everything passes.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.block.is_empty()
    }

    /// True when `name` passes both lists.
    pub fn permits(&self, name: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|r| r.is_match(name))) && !self.blocked(name)
    }

    /// True when a blocklist entry matches (for families the Go exporter filters by
    /// blocklist only).
    pub fn blocked(&self, name: &str) -> bool {
        self.block.iter().any(|r| r.is_match(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(v: &[&str]) -> Vec<Regex> {
        v.iter().map(|s| Regex::new(s).unwrap()).collect()
    }

    #[test]
    fn or_within_and_across() {
        let f = Filter::new(re(&["^prod", "^www"]), re(&["staging", "dev$"]));
        assert!(f.permits("prod-api"));
        assert!(f.permits("www"));
        assert!(!f.permits("other"), "allowlist set and not matched");
        assert!(!f.permits("prod-staging"), "blocked despite allowed");
        assert!(!f.permits("www-dev"));
        assert!(Filter::default().permits("anything"));
        let only_block = Filter::new(vec![], re(&["imgopto"]));
        assert!(only_block.permits("fastly_rt_requests_total"));
        assert!(!only_block.permits("fastly_rt_imgopto_total"));
    }
}
