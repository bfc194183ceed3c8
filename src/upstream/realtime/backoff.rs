//! How long a poller waits before its next request, by outcome.
//!
//! The rules are the Go exporter's (so Fastly sees the same request pattern from either):
//! data → poll again at once; "No data" → n³ + rand(1..10)·n seconds for the n-th consecutive
//! one (n capped at 5); 401/403 → 120 s; other statuses → 5 s (30 s for origins); transport and
//! decode errors → 1 s. On top: 429 waits what `Retry-After` asks, bounded by 15 minutes.

use std::time::Duration;

use crate::catalog::Stream;

/// The consecutive "No data" count at which the delay stops growing.
const MAX_NO_DATA: u64 = 5;

/// Longest wait a `Retry-After` header can impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// What a poll ended with, as far as waiting is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// HTTP 200 with data.
    Data,
    /// HTTP 200 saying "No data available".
    NoData,
    /// HTTP 401 or 403.
    Unauthorized,
    /// HTTP 429, with the server's `Retry-After` if it sent one.
    RateLimited(Option<Duration>),
    /// Any other HTTP status.
    Status,
    /// Connect/read failure, timeout, truncated or malformed body.
    Transport,
    /// Body over the size cap.
    TooLarge,
}

/// Per-poller backoff state.
#[derive(Debug)]
pub struct Backoff {
    stream: Stream,
    no_data: u64,
    rng: u64,
}

impl Backoff {
    /// Fresh state; `seed` varies the jitter between pollers.
    pub fn new(stream: Stream, seed: u64) -> Backoff {
        Backoff { stream, no_data: 0, rng: seed | 1 }
    }

    /// The wait after `outcome`, updating the consecutive "No data" count.
    pub fn next(&mut self, outcome: Outcome) -> Duration {
        match outcome {
            Outcome::Data => {
                self.no_data = 0;
                Duration::ZERO
            }
            Outcome::NoData => {
                self.no_data = (self.no_data + 1).min(MAX_NO_DATA);
                let n = self.no_data;
                Duration::from_secs(n * n * n + self.jitter() * n)
            }
            Outcome::Unauthorized => Duration::from_secs(120),
            Outcome::RateLimited(asked) => asked.unwrap_or(Duration::from_secs(60)).min(MAX_RETRY_AFTER),
            Outcome::Status | Outcome::TooLarge => match self.stream {
                Stream::Origin => Duration::from_secs(30),
                _ => Duration::from_secs(5),
            },
            Outcome::Transport => Duration::from_secs(1),
        }
    }

    /// 1..=10, from a xorshift generator (statistical quality is irrelevant here).
    fn jitter(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 10 + 1
    }
}

/// Parses `Retry-After` in its seconds form; the HTTP-date form falls back to the default.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_data_grows_cubically_with_jitter_and_caps() {
        let mut b = Backoff::new(Stream::Realtime, 42);
        for n in 1..=7u64 {
            let d = b.next(Outcome::NoData).as_secs();
            let k = n.min(5);
            assert!(d > k * k * k && d <= k * k * k + 10 * k, "n={n}: {d}");
            assert_eq!((d - k * k * k) % k, 0, "jitter is a multiple of n");
        }
        assert_eq!(b.next(Outcome::Data), Duration::ZERO);
        let d = b.next(Outcome::NoData).as_secs();
        assert!((2..=11).contains(&d), "count restarts after data: {d}");
    }

    #[test]
    fn fixed_delays() {
        let mut rt = Backoff::new(Stream::Realtime, 1);
        let mut origin = Backoff::new(Stream::Origin, 1);
        assert_eq!(rt.next(Outcome::Unauthorized), Duration::from_secs(120));
        assert_eq!(rt.next(Outcome::Status), Duration::from_secs(5));
        assert_eq!(origin.next(Outcome::Status), Duration::from_secs(30));
        assert_eq!(rt.next(Outcome::Transport), Duration::from_secs(1));
        assert_eq!(rt.next(Outcome::RateLimited(Some(Duration::from_secs(7)))), Duration::from_secs(7));
        assert_eq!(rt.next(Outcome::RateLimited(Some(Duration::from_secs(99_999)))), MAX_RETRY_AFTER);
        assert_eq!(parse_retry_after(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
