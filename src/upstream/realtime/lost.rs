//! Seconds the real-time API no longer held when the exporter asked for them: counted per
//! stream, and logged at most once per stream every ten minutes.
//!
//! rt.fastly.com keeps a limited history. A poll for a `ts` older than that is answered from
//! the oldest second it still has; the records' `recorded` seconds then start after the `ts`
//! asked for, and the difference is what is gone for good. This happens after an outage or
//! a restart (with `-state-file`) longer than the history; nothing here assumes its length.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::catalog::Stream;
use crate::store::Counters;

/// A stream's gaps are logged at most this often (a thousand services resuming after one
/// outage are one event, not a thousand lines).
const LOG_EVERY: Duration = Duration::from_secs(600);

/// When each stream last logged a gap.
#[derive(Debug, Default)]
pub struct LostSeconds {
    logged: Mutex<[Option<Instant>; 3]>,
}

impl LostSeconds {
    /// Counts (in `counters`) the seconds `asked..first` of `service` as lost, and logs them
    /// unless this stream logged a gap in the last ten minutes.
    pub fn report(&self, stream: Stream, service: &str, asked: u64, first: u64, counters: &Counters) {
        let n = first.saturating_sub(asked);
        if n == 0 {
            return;
        }
        counters.count_lost_seconds(stream, n);
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        let last = &mut logged[stream.index()];
        if last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let s = if n == 1 { "" } else { "s" };
        log::warn!(
            "service {service}: {} poll: the API no longer holds the {n} second{s} from {asked} to {}; resumed at \
             its oldest second, {first} (counted in fastly_exporter_lost_seconds_total; logged once per stream \
             every 10 minutes)",
            stream.name(),
            first - 1
        );
    }
}
