//! rt.fastly.com: `/v1/{channel,origins,domains}/{service}/ts/{ts}` long-polls.
//!
//! Every answer is decided here but delivered by the server: either at once or at a due
//! instant through the delay queue, so a held poll costs a heap entry, not a thread.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::faults::FaultRt;
use super::history::{self, batch_body};
use super::payload::GenPool;
use super::server::{Outcome, Resp, Wire};
use super::{FakeState, Reply, Stream, StreamMode};

/// Longest a generated poll is held; a `ts` further in the future gets "No data" then.
const MAX_HOLD: Duration = Duration::from_secs(30);

/// "Held until shutdown" for scripts that ran out of replies.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// A [`StreamMode`] turned into what serving needs (shared bodies, pre-built payloads).
pub(super) enum ModeRt {
    /// [`StreamMode::NotFound`].
    NotFound,
    /// [`StreamMode::FixtureThenHold`], body shared between answers.
    Hold { body: Arc<[u8]>, hold: Duration },
    /// [`StreamMode::Generated`] with its payloads already rendered.
    Generated(GenPool),
    /// [`StreamMode::Script`].
    Script(Vec<Reply>),
    /// [`StreamMode::Faulty`] with its payloads already rendered.
    Faulty(FaultRt),
}

impl ModeRt {
    /// Prepares `mode` for `stream`; for `Generated` this renders all payloads.
    pub(super) fn build(stream: Stream, mode: StreamMode) -> ModeRt {
        match mode {
            StreamMode::NotFound => ModeRt::NotFound,
            StreamMode::FixtureThenHold { body, hold } => ModeRt::Hold { body: Arc::from(body), hold },
            StreamMode::Generated(spec) => ModeRt::Generated(GenPool::build(stream, &spec)),
            StreamMode::Script(replies) => ModeRt::Script(replies),
            StreamMode::Faulty(spec) => ModeRt::Faulty(FaultRt::build(stream, spec)),
        }
    }

    /// Bytes of pre-built generated payloads (0 for other modes).
    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            ModeRt::Generated(pool) => pool.heap_bytes(),
            ModeRt::Faulty(f) => f.heap_bytes(),
            _ => 0,
        }
    }
}

/// Splits a stream path into (stream, service id, ts text).
pub(super) fn parse_path(path: &str) -> Option<(Stream, &str, &str)> {
    let rest = path.strip_prefix("/v1/")?;
    let mut parts = rest.split('/');
    let segment = parts.next()?;
    let stream = Stream::ALL.into_iter().find(|s| s.path() == segment)?;
    let id = parts.next()?;
    if parts.next()? != "ts" {
        return None;
    }
    let ts = parts.next()?;
    if parts.next().is_some() || id.is_empty() {
        return None;
    }
    Some((stream, id, ts))
}

/// FNV-1a of the service id: spreads services over the payload variants.
pub(super) fn service_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Fastly's empty answer when a poll times out without data; echoes the polled `ts`.
fn no_data(ts: u64) -> Resp {
    let body =
        format!(r#"{{"Data":[],"Timestamp":{ts},"AggregateDelay":0,"Error":"No data available, please retry"}}"#);
    Resp::json(200, body.into_bytes())
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)
}

/// Decides the answer to one poll.
pub(super) fn answer(state: &FakeState, stream: Stream, id: &str, ts: &str) -> Outcome {
    if let Some(r) = state.service_reply(stream, id) {
        return Outcome::At(Instant::now() + r.delay, scripted(&r));
    }
    let mode = state.mode(stream);
    if let ModeRt::NotFound = *mode {
        return Outcome::Now(Resp::json(404, br#"{"Error":"Not Found"}"#.to_vec()));
    }
    if !state.service_set().contains(id) {
        return Outcome::Now(Resp::json(404, br#"{"Error":"Service not found"}"#.to_vec()));
    }
    let Ok(ts) = ts.parse::<u64>() else {
        return Outcome::Now(Resp::json(400, br#"{"Error":"invalid timestamp"}"#.to_vec()));
    };
    match &*mode {
        ModeRt::NotFound => unreachable!("handled above"),
        ModeRt::Hold { body, hold } => {
            if ts == 0 {
                Outcome::Now(Resp::shared(200, Arc::clone(body)))
            } else {
                Outcome::At(Instant::now() + *hold, no_data(ts))
            }
        }
        ModeRt::Generated(pool) => generated(state, pool, stream, id, ts),
        ModeRt::Faulty(f) => {
            let count = |label: &str| state.count_injected(stream, label);
            let books = super::faults::Books { tallies: &state.tallies, settled: &state.settled, count: &count };
            f.answer(id, service_hash(id), ts, state.port, &books)
        }
        ModeRt::Script(replies) => {
            let n = state.next_script_index(stream, id);
            match replies.get(n) {
                Some(r) => Outcome::At(Instant::now() + r.delay, scripted(r)),
                None => Outcome::At(Instant::now() + FOREVER, no_data(ts)),
            }
        }
    }
}

/// The response of a scripted reply (its delay is the caller's).
fn scripted(r: &Reply) -> Resp {
    let mut resp = Resp::json(r.status, r.body.clone());
    for (k, v) in &r.headers {
        resp.set_header(k, v);
    }
    resp
}

/// A `Generated` stream's answer to `ts`, as rt.fastly.com gives it:
/// - `ts` 0: the latest complete second;
/// - a `ts` in the past: the seconds since then, from the oldest second of the history if `ts`
///   is older, at most `batch_secs` of them (`Timestamp` says where to go on);
/// - the current second or later: held until that second is complete (a second not due within
///   30 s gets "No data").
///
/// [`FakeState::set_generated_until`] moves "now" back to a fixed second. Every answer with
/// data is booked in [`FakeState::served`] once it has been written in full.
fn generated(state: &FakeState, pool: &GenPool, stream: Stream, id: &str, ts: u64) -> Outcome {
    let now = unix_now();
    let live = now.as_secs();
    let until = state.generated_until();
    // The first second not served yet ("now" for this stream).
    let present = until.map_or(live, |u| live.min(u.saturating_add(1)));
    let hash = service_hash(id);
    let book = |first: u64, last: u64, mut resp: Resp| {
        let served = Arc::clone(&state.served);
        let id = id.to_string();
        resp.wire = Wire::Tracked(Box::new(move || history::note_served(&served, stream, &id, first, last)));
        resp
    };
    if ts < present {
        let (first, last) = if ts == 0 {
            (present - 1, present - 1)
        } else {
            let oldest = live.saturating_sub(state.history_secs);
            let first = ts.max(oldest);
            (first, (present - 1).min(first + state.batch_secs - 1))
        };
        if first > last {
            // Paused before the oldest second kept: nothing to give.
            return Outcome::At(Instant::now() + MAX_HOLD, no_data(ts));
        }
        let resp = if first == last {
            let (head, tail) = pool.body(hash, first);
            Resp::spliced(200, head, tail)
        } else {
            Resp::json(200, batch_body(pool, hash, first, last))
        };
        return Outcome::Now(book(first, last, resp));
    }
    let wait = Duration::from_secs(ts + 1).saturating_sub(now);
    if wait > MAX_HOLD || until.is_some_and(|u| ts > u) {
        return Outcome::At(Instant::now() + MAX_HOLD.min(wait.max(Duration::from_secs(1))), no_data(ts));
    }
    let (head, tail) = pool.body(hash, ts);
    // A few ms of slack so the client never sees the answer before the second ends.
    let due = Instant::now() + wait + Duration::from_millis(2);
    Outcome::At(due, book(ts, ts, Resp::spliced(200, head, tail)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse_path("/v1/channel/abc/ts/0"), Some((Stream::Realtime, "abc", "0")));
        assert_eq!(parse_path("/v1/domains/abc/ts/17"), Some((Stream::Domains, "abc", "17")));
        assert_eq!(parse_path("/v1/origins/abc/ts"), None);
        assert_eq!(parse_path("/v1/other/abc/ts/1"), None);
        assert_eq!(parse_path("/v1/channel/abc/ts/1/x"), None);
    }
}
