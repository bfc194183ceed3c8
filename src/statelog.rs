//! Logging failures once per state change instead of once per attempt.
//!
//! A poller retrying every second against a broken endpoint would otherwise write 86,400
//! identical lines a day per service. A `StateLog` writes one line when a failure starts or
//! changes kind, and one when it clears, with how often it happened and since when.

use std::time::{SystemTime, UNIX_EPOCH};

/// The failure state of one repeating task.
#[derive(Debug, Default)]
pub struct StateLog {
    current: Option<String>,
    count: u64,
    since: u64,
}

impl StateLog {
    /// Records a failure described by `what` (no secrets in it); logs only on a new kind.
    pub fn fail(&mut self, subject: &str, what: &str) {
        if self.current.as_deref() == Some(what) {
            self.count += 1;
            return;
        }
        if let Some(prev) = self.current.take() {
            log::warn!("{subject}: {prev} ({} times since {}); now: {what}", self.count, clock(self.since));
        } else {
            log::warn!("{subject}: {what}");
        }
        self.current = Some(what.to_string());
        self.count = 1;
        self.since = now();
    }

    /// Records a success; logs the recovery if something was failing.
    pub fn ok(&mut self, subject: &str) {
        if let Some(prev) = self.current.take() {
            log::info!("{subject}: recovered after {prev} ({} times since {})", self.count, clock(self.since));
        }
    }

    /// True while the last attempt failed.
    pub fn failing(&self) -> bool {
        self.current.is_some()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `HH:MM:SS` (UTC) of a unix time, for compact log lines.
fn clock(t: u64) -> String {
    let s = t % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_repeats_and_clears() {
        let mut s = StateLog::default();
        s.fail("svc", "HTTP 503");
        s.fail("svc", "HTTP 503");
        s.fail("svc", "HTTP 503");
        assert_eq!(s.count, 3);
        s.fail("svc", "timeout");
        assert_eq!(s.count, 1);
        assert!(s.failing());
        s.ok("svc");
        assert!(!s.failing());
        assert_eq!(clock(3661), "01:01:01");
    }
}
