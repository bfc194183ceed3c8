//! Logging failures once per state change instead of once per attempt.
//!
//! A poller retrying every second against a broken endpoint would otherwise write 86,400
//! identical lines a day per service. A `StateLog` writes one line when a failure starts or
//! changes kind, one when it clears, and an hourly reminder while it lasts, each saying how
//! often it happened and since when:
//! `service X: rt poll failing: HTTP 503 (3 times since 12:00:01)`.

use std::time::{SystemTime, UNIX_EPOCH};

/// How often a persisting failure is logged again.
const REMIND_EVERY_SECS: u64 = 3600;

/// The failure state of one repeating task.
#[derive(Debug, Default)]
pub struct StateLog {
    current: Option<String>,
    /// The current failure was reported elsewhere (once for the whole process): lines about
    /// it go to the debug level.
    quiet: bool,
    count: u64,
    since: u64,
    last_logged: u64,
}

impl StateLog {
    /// Records a failure described by `what` (no secrets in it); logs only on a new kind,
    /// or as an hourly reminder.
    pub fn fail(&mut self, subject: &str, what: &str) {
        self.record(subject, what, false);
    }

    /// Like [`StateLog::fail`]; with `quiet`, for a failure already reported once for the
    /// whole process (an untrusted TLS certificate), its lines go to the debug level, so a
    /// dozen tasks failing on one host do not repeat the same line.
    pub fn fail_as(&mut self, subject: &str, what: &str, quiet: bool) {
        self.record(subject, what, quiet);
    }

    fn record(&mut self, subject: &str, what: &str, quiet: bool) {
        let level = if quiet { log::Level::Debug } else { log::Level::Warn };
        let now = now();
        if self.current.as_deref() == Some(what) {
            self.count += 1;
            if now >= self.last_logged + REMIND_EVERY_SECS {
                log::log!(level, "{subject} still failing: {what} ({} times since {})", self.count, clock(self.since));
                self.last_logged = now;
            }
            return;
        }
        match self.current.take() {
            Some(prev) => log::log!(
                level,
                "{subject} failing: {prev} ({} times since {}); now: {what}",
                self.count,
                clock(self.since)
            ),
            None => log::log!(level, "{subject} failing: {what}"),
        }
        self.quiet = quiet;
        self.current = Some(what.to_string());
        self.count = 1;
        self.since = now;
        self.last_logged = now;
    }

    /// Records a success; logs the recovery if something was failing.
    pub fn ok(&mut self, subject: &str) {
        if let Some(prev) = self.current.take() {
            let level = if self.quiet { log::Level::Debug } else { log::Level::Info };
            log::log!(level, "{subject} recovered: {prev} ({} times since {})", self.count, clock(self.since));
        }
    }
}

/// Events that come in floods (wrong passwords, clients that leave): the first is logged,
/// then at most one line an hour, so an attack costs a line, not a line per request.
#[derive(Debug, Default)]
pub struct Throttled {
    /// When the last line was written (unix seconds; `None`: never).
    last: std::sync::Mutex<Option<u64>>,
}

impl Throttled {
    /// Whether an event now should be logged.
    pub fn due(&self) -> bool {
        self.due_at(now())
    }

    fn due_at(&self, now: u64) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some(t) if now < t + REMIND_EVERY_SECS => false,
            _ => {
                *last = Some(now);
                true
            }
        }
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
        assert!(s.current.is_some());
        s.ok("svc");
        assert!(s.current.is_none());
        assert_eq!(clock(3661), "01:01:01");
    }

    #[test]
    fn throttled_logs_the_first_event_then_hourly() {
        let t = Throttled::default();
        assert!(t.due_at(1000));
        assert!(!t.due_at(1001));
        assert!(!t.due_at(1000 + REMIND_EVERY_SECS - 1));
        assert!(t.due_at(1000 + REMIND_EVERY_SECS));
    }
}
