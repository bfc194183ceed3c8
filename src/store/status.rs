//! What each (service, stream) poller is doing, for the status page (`/`) and `/status.json`.
//!
//! The poller knows its outcomes (its `StateLog` and backoff); this record is where it leaves
//! them for the HTTP side: the current state, when the last good answer came, the last error
//! (status and message; the token never reaches a poller's messages) and when it retries. The
//! main thread marks a stream polled when it starts a poller and not polled when it stops one,
//! so a stream the exporter does not poll has no status at all (absent from the page and JSON).
//!
//! How the poller maps its outcomes to these states is documented (and decided) in
//! `upstream/realtime/status.rs`; this module only stores what it is told.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A stream's state, as the status page and `/status.json` spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// Polled, no answer yet.
    Starting,
    /// The last poll was answered (data or "No data available").
    Ok,
    /// Answered, but still reading back from a restored position towards now (set by state
    /// restore through [`StatusCell::set_catching_up`]).
    CatchingUp,
    /// The last poll failed and is retried within seconds.
    Failing,
    /// The API refused or throttled the last poll (401/403, 429) and the poller waits what it
    /// was told, or a long fixed delay, before asking again.
    BackingOff,
    /// rt.fastly.com says the service does not have this stream's product.
    NotEntitled,
}

impl StreamState {
    /// Every state, in the order the page sorts them (worst first).
    pub const ALL: [StreamState; 6] = [
        StreamState::Failing,
        StreamState::BackingOff,
        StreamState::Starting,
        StreamState::CatchingUp,
        StreamState::NotEntitled,
        StreamState::Ok,
    ];

    /// The state string of the page and of `/status.json`.
    pub fn label(self) -> &'static str {
        match self {
            StreamState::Starting => "starting",
            StreamState::Ok => "ok",
            StreamState::CatchingUp => "catching up",
            StreamState::Failing => "failing",
            StreamState::BackingOff => "backing off",
            StreamState::NotEntitled => "not entitled",
        }
    }

    /// Whether the stream counts its service as failing: data is not arriving and something
    /// other than the account's products is to blame.
    pub fn is_failing(self) -> bool {
        matches!(self, StreamState::Failing | StreamState::BackingOff)
    }
}

/// The last failed poll of a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct PollError {
    /// The HTTP status, or `None` when no HTTP answer came (connection, timeout, TLS).
    pub status: Option<u16>,
    /// What went wrong, one line.
    pub message: String,
    /// Unix time of the failure.
    pub at: f64,
}

/// A stream's status at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamStatus {
    /// The state, with `catching up` applied.
    pub state: StreamState,
    /// Unix time the state began.
    pub since: f64,
    /// Unix time of the last good answer, if any since the poller started.
    pub last_success: Option<f64>,
    /// The last failure since the poller started; kept after a recovery, so a flapping
    /// stream shows what it last failed with.
    pub last_error: Option<PollError>,
    /// While failing or backing off: unix time of the next attempt.
    pub retry_at: Option<f64>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `None`: no poller (the stream is not polled).
    status: Option<StreamStatus>,
    /// State restore's flag; shows a successful stream as `catching up`.
    catching_up: bool,
}

/// The status of one (service, stream), written by its poller and the main thread, read by
/// HTTP workers. A mutex: it changes at most once per poll, and is read by the status page.
#[derive(Debug, Default)]
pub struct StatusCell(Mutex<Inner>);

impl StatusCell {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A poller was started for this stream at `now`: `starting`, nothing known yet.
    pub fn start(&self, now: f64) {
        let mut g = self.lock();
        g.status = Some(StreamStatus {
            state: StreamState::Starting,
            since: now,
            last_success: None,
            last_error: None,
            retry_at: None,
        });
    }

    /// The stream's poller was stopped: the stream is not polled any more. The caller sets
    /// the poller's stop flag first, so the poller's last report cannot undo this.
    pub fn stop(&self) {
        let mut g = self.lock();
        g.status = None;
        g.catching_up = false;
    }

    /// A poll was answered at `now` (data or "No data available"). Ignored once `stopped`
    /// is set (checked under the lock, see [`StatusCell::stop`]) or while not polled.
    pub fn record_success(&self, stopped: &AtomicBool, now: f64) {
        let mut g = self.lock();
        if stopped.load(Ordering::SeqCst) {
            return;
        }
        let catching_up = g.catching_up;
        if let Some(s) = &mut g.status {
            let state = if catching_up { StreamState::CatchingUp } else { StreamState::Ok };
            set_state(s, state, now);
            s.last_success = Some(now);
            s.retry_at = None;
        }
    }

    /// A poll failed with `error`; the poller's rules made it `state` (failing, backing off
    /// or not entitled), and it asks again at `retry_at`. Ignored like
    /// [`StatusCell::record_success`].
    pub fn record_failure(&self, stopped: &AtomicBool, state: StreamState, error: PollError, retry_at: f64) {
        let mut g = self.lock();
        if stopped.load(Ordering::SeqCst) {
            return;
        }
        if let Some(s) = &mut g.status {
            set_state(s, state, error.at);
            s.last_error = Some(error);
            s.retry_at = Some(retry_at);
        }
    }

    /// State restore (issue 19): `true` when a restored stream resumes from an old position,
    /// `false` once it has caught up with now. While set, a stream whose polls succeed shows
    /// `catching up` instead of `ok` (failures still show as failures).
    pub fn set_catching_up(&self, on: bool, now: f64) {
        let mut g = self.lock();
        g.catching_up = on;
        if let Some(s) = &mut g.status {
            match (on, s.state) {
                (true, StreamState::Ok) => set_state(s, StreamState::CatchingUp, now),
                (false, StreamState::CatchingUp) => set_state(s, StreamState::Ok, now),
                _ => {}
            }
        }
    }

    /// The status now, or `None` when the stream is not polled.
    pub fn get(&self) -> Option<StreamStatus> {
        self.lock().status.clone()
    }
}

fn set_state(s: &mut StreamStatus, state: StreamState, now: f64) {
    if s.state != state {
        s.state = state;
        s.since = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: Option<u16>, at: f64) -> PollError {
        PollError { status, message: format!("HTTP {status:?}"), at }
    }

    #[test]
    fn follows_a_pollers_life() {
        let cell = StatusCell::default();
        let running = AtomicBool::new(false);
        assert_eq!(cell.get(), None, "not polled: absent");
        cell.record_success(&running, 5.0);
        assert_eq!(cell.get(), None, "a report before the start is ignored");

        cell.start(10.0);
        let s = cell.get().unwrap();
        assert_eq!(
            (s.state, s.since, s.last_success, s.last_error.as_ref()),
            (StreamState::Starting, 10.0, None, None)
        );

        cell.record_failure(&running, StreamState::Failing, err(Some(500), 11.0), 16.0);
        cell.record_failure(&running, StreamState::Failing, err(Some(502), 16.5), 21.5);
        let s = cell.get().unwrap();
        assert_eq!(
            (s.state, s.since, s.retry_at),
            (StreamState::Failing, 11.0, Some(21.5)),
            "since: the first failure"
        );
        assert_eq!(s.last_error, Some(err(Some(502), 16.5)));

        cell.record_success(&running, 22.0);
        let s = cell.get().unwrap();
        assert_eq!((s.state, s.since, s.last_success, s.retry_at), (StreamState::Ok, 22.0, Some(22.0), None));
        assert_eq!(s.last_error, Some(err(Some(502), 16.5)), "the last error stays after a recovery");

        cell.record_failure(&running, StreamState::BackingOff, err(Some(429), 23.0), 83.0);
        assert_eq!(cell.get().unwrap().state, StreamState::BackingOff);
        assert!(StreamState::BackingOff.is_failing() && StreamState::Failing.is_failing());
        assert!(!StreamState::NotEntitled.is_failing() && !StreamState::Starting.is_failing());
    }

    #[test]
    fn a_stopped_poller_cannot_bring_its_stream_back() {
        let cell = StatusCell::default();
        let stopped = AtomicBool::new(false);
        cell.start(1.0);
        stopped.store(true, Ordering::SeqCst);
        cell.stop();
        cell.record_success(&stopped, 2.0);
        cell.record_failure(&stopped, StreamState::Failing, err(None, 2.0), 3.0);
        assert_eq!(cell.get(), None);
        // A new poller for the same stream starts over.
        cell.start(4.0);
        assert_eq!(cell.get().unwrap().state, StreamState::Starting);
        cell.record_success(&stopped, 5.0);
        assert_eq!(cell.get().unwrap().state, StreamState::Starting, "the old poller's flag is still set");
    }

    #[test]
    fn catching_up_replaces_ok_until_cleared() {
        let cell = StatusCell::default();
        let running = AtomicBool::new(false);
        cell.start(1.0);
        cell.set_catching_up(true, 1.0);
        assert_eq!(cell.get().unwrap().state, StreamState::Starting, "no answer yet");
        cell.record_success(&running, 2.0);
        assert_eq!(cell.get().unwrap().state, StreamState::CatchingUp);
        cell.record_failure(&running, StreamState::Failing, err(None, 3.0), 4.0);
        assert_eq!(cell.get().unwrap().state, StreamState::Failing, "a failure is still a failure");
        cell.record_success(&running, 4.0);
        assert_eq!(cell.get().unwrap().state, StreamState::CatchingUp);
        cell.set_catching_up(false, 5.0);
        let s = cell.get().unwrap();
        assert_eq!((s.state, s.since), (StreamState::Ok, 5.0));
        cell.set_catching_up(true, 6.0);
        assert_eq!(cell.get().unwrap().state, StreamState::CatchingUp, "set on a running stream");
        let labels: Vec<&str> = StreamState::ALL.iter().map(|s| s.label()).collect();
        assert_eq!(labels, ["failing", "backing off", "starting", "catching up", "not entitled", "ok"]);
    }
}
