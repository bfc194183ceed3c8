//! How a poll's outcome becomes its stream's state on the status page (`/`, `/status.json`).
//!
//! | the poll ended with | state |
//! |---|---|
//! | HTTP 200 with data, or with "No data available" | `ok` (`catching up` while state restore says so) |
//! | HTTP 401/403 (token refused: the poller waits 120 s), 429 (rate limited: it waits what `Retry-After` asks, ≤ 15 min) | `backing off` |
//! | HTTP 404 on the origins or domains stream: what rt.fastly.com answers for a service without Origin or Domain Inspector | `not entitled` |
//! | any other HTTP status, a connection error or timeout, a truncated, malformed or oversized body, a panic | `failing` |
//!
//! Before its first answer a stream is `starting`. **Failing or backing off** is decided by who
//! stops the data: `failing` is a fault on the way (network, server error, bad body) that the
//! poller retries on its own schedule within 1–30 s, so it may clear at the next attempt;
//! `backing off` is the API refusing or throttling us, and the poller deliberately waits
//! minutes before asking again, so nothing arrives until then (the page shows when). Both count
//! the service as failing.
//!
//! **Not entitled** has two levels. The account's products come from
//! `/entitled-products/{product}` (`app/metadata.rs`): without `has_access` (or before the first
//! answer) the stream gets no poller at all and is absent from the page, like a stream the
//! metric filters leave out. With it, a service whose product is not enabled still gets 404
//! from rt.fastly.com on that stream, shown as `not entitled` (not a failure: enabling the
//! product is a decision, not a fault). On the real-time stream a 404 means the service is gone
//! or unknown, which is a failure.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::catalog::Stream;
use crate::store::{PollError, Service, StreamState};

use super::backoff::Outcome;

/// Longest message kept from an error answer's body.
const MAX_API_MESSAGE: usize = 200;

/// Largest error body searched for a message: a real one is a few dozen bytes.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Why a poll failed, as the page shows it: the HTTP status (if an answer came) and one line.
#[derive(Debug)]
pub struct Failure {
    /// HTTP status of the answer, `None` when no answer came.
    pub status: Option<u16>,
    /// Our description, plus the API's own message when its body had one.
    pub message: String,
}

/// The state of a stream whose poll ended with `outcome` (a failure, with HTTP `status`).
pub fn failed_state(stream: Stream, outcome: Outcome, status: Option<u16>) -> StreamState {
    match outcome {
        Outcome::Unauthorized | Outcome::RateLimited(_) => StreamState::BackingOff,
        Outcome::Status if status == Some(404) && stream != Stream::Realtime => StreamState::NotEntitled,
        _ => StreamState::Failing,
    }
}

/// Records a poll's result in the service's status record: `failure` is `None` for an
/// answered poll. `delay` is the wait before the next attempt. Nothing is recorded once
/// `stopped` is set.
pub fn report(
    service: &Service,
    stream: Stream,
    stopped: &AtomicBool,
    outcome: Outcome,
    failure: Option<Failure>,
    delay: Duration,
) {
    let now = unix_now();
    let cell = service.status(stream);
    match failure {
        None => cell.record_success(stopped, now),
        Some(f) => {
            let state = failed_state(stream, outcome, f.status);
            let error = PollError { status: f.status, message: f.message, at: now };
            cell.record_failure(stopped, state, error, now + delay.as_secs_f64());
        }
    }
}

/// `what`, followed by the API's own message when the error body carries one
/// (`{"Error": "…"}` or `{"msg": "…"}`), on one line and at most 200 characters.
pub fn with_api_message(what: String, body: &[u8]) -> String {
    match api_message(body) {
        Some(m) => format!("{what}: {m}"),
        None => what,
    }
}

fn api_message(body: &[u8]) -> Option<String> {
    if body.is_empty() || body.len() > MAX_ERROR_BODY {
        return None;
    }
    /// Only the keys Fastly's error bodies use; everything else is skipped unread.
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(rename = "Error")]
        error: Option<String>,
        msg: Option<String>,
        message: Option<String>,
        detail: Option<String>,
    }
    let e: ErrorBody = serde_json::from_slice(body).ok()?;
    let text = e.error.or(e.msg).or(e.message).or(e.detail)?;
    let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    Some(match line.char_indices().nth(MAX_API_MESSAGE) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    })
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_states() {
        use StreamState::*;
        let cases = [
            (Stream::Realtime, Outcome::Status, Some(500), Failing),
            (Stream::Realtime, Outcome::Status, Some(404), Failing),
            (Stream::Origin, Outcome::Status, Some(404), NotEntitled),
            (Stream::Domain, Outcome::Status, Some(404), NotEntitled),
            (Stream::Domain, Outcome::Status, Some(503), Failing),
            (Stream::Realtime, Outcome::Transport, None, Failing),
            (Stream::Realtime, Outcome::TooLarge, None, Failing),
            (Stream::Realtime, Outcome::Unauthorized, Some(403), BackingOff),
            (Stream::Origin, Outcome::RateLimited(None), Some(429), BackingOff),
        ];
        for (stream, outcome, status, want) in cases {
            assert_eq!(failed_state(stream, outcome, status), want, "{stream:?} {outcome:?} {status:?}");
        }
    }

    #[test]
    fn api_messages_are_one_bounded_line() {
        assert_eq!(with_api_message("HTTP 500".into(), br#"{"Error":"boom"}"#), "HTTP 500: boom");
        assert_eq!(with_api_message("HTTP 503".into(), br#"{"msg":" a\nb "}"#), "HTTP 503: a b");
        assert_eq!(with_api_message("HTTP 502".into(), b"<html>bad gateway</html>"), "HTTP 502");
        assert_eq!(with_api_message("HTTP 401".into(), b""), "HTTP 401");
        assert_eq!(with_api_message("HTTP 500".into(), br#"{"Error":42}"#), "HTTP 500");
        assert_eq!(with_api_message("HTTP 500".into(), br#"{"x":[[1]],"detail":"d"}"#), "HTTP 500: d");
        // Other keys are skipped unread, without recursion: deep nesting is harmless on a
        // poller's 128 KiB stack.
        let deep = format!(r#"{{"x":{}{},"Error":"e"}}"#, "[".repeat(20_000), "]".repeat(20_000));
        let on_poller_stack = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || with_api_message("HTTP 500".into(), deep.as_bytes()))
            .unwrap();
        assert_eq!(on_poller_stack.join().unwrap(), "HTTP 500: e");
        let long = format!(r#"{{"Error":"{}"}}"#, "é".repeat(500));
        let m = with_api_message("HTTP 500".into(), long.as_bytes());
        assert_eq!(m.chars().count(), "HTTP 500: ".len() + 200 + 1, "{m}");
    }
}
