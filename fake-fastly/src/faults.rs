//! The `Faulty` stream mode: generated data at full speed, with injected failures, and the
//! ground truth of what was really delivered.
//!
//! Each poll independently gets, with probability `rate`, one fault drawn uniformly from the
//! spec's kinds; otherwise a clean 200 carrying the data of the polled `ts` (deterministic per
//! service and `ts`) with `Timestamp: ts + 1`. Clean answers are paced per service, not by the
//! wall clock, so a test sees many seconds of data in a few seconds of real time.
//!
//! A clean answer is tallied only once the server has written every byte of it to the socket,
//! and a `ts` counts once however often it is delivered: the tally is exactly what a correct
//! exporter must have counted. Every answer of this mode goes through the delay queue, so the
//! worker threads never write a fault (or wait on a stall).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::history::VariantRows;
use super::payload::{GenPool, Rng, tail};
use super::server::{Outcome, Resp, Wire};
use super::{DcTotals, Delivered, Fault, FaultSpec, Stream, lock};

/// The ground truth of one (stream, service).
#[derive(Default)]
pub(super) struct Tally {
    /// Delivered `ts` → (envelope prefix, `recorded`), to rebuild the bodies on demand.
    ts: BTreeMap<u64, (Arc<[u8]>, u64)>,
    redelivered: u64,
    rows: BTreeMap<String, DcTotals>,
}

impl Tally {
    fn add(&mut self, ts: u64, recorded: u64, prefix: Arc<[u8]>, rows: &VariantRows) {
        if self.ts.contains_key(&ts) {
            self.redelivered += 1;
            return;
        }
        self.ts.insert(ts, (prefix, recorded));
        rows.add_to(&mut self.rows);
    }

    /// The public summary.
    pub(super) fn summary(&self) -> Delivered {
        Delivered {
            ts: self.ts.keys().copied().collect(),
            redelivered: self.redelivered,
            datacenters: self.rows.clone(),
        }
    }

    /// Every delivered body, by ascending `ts`.
    pub(super) fn bodies(&self) -> Vec<(u64, Vec<u8>)> {
        self.ts
            .iter()
            .map(|(ts, (prefix, recorded))| {
                let mut body = prefix.to_vec();
                body.extend_from_slice(&tail(*recorded, ""));
                (*ts, body)
            })
            .collect()
    }
}

/// Ground truth of every (stream, service), shared with the responder threads.
pub(super) type Tallies = Arc<Mutex<HashMap<(Stream, String), Tally>>>;

/// Answers acted on, per stream and label (`clean` or a fault's label).
pub(super) type Settled = Arc<Mutex<HashMap<Stream, BTreeMap<String, u64>>>>;

/// Where [`FaultRt::answer`] books what it decided and what was delivered.
pub(super) struct Books<'a> {
    /// Receives clean answers once written.
    pub(super) tallies: &'a Tallies,
    /// Receives every answer once acted on.
    pub(super) settled: &'a Settled,
    /// Records the kind decided (`clean` or a fault's label).
    pub(super) count: &'a dyn Fn(&str),
}

/// A [`super::StreamMode::Faulty`] ready to serve.
pub(super) struct FaultRt {
    stream: Stream,
    pool: GenPool,
    rows: Vec<Arc<VariantRows>>,
    rate: AtomicU64,
    kinds: Vec<Fault>,
    oversize: usize,
    interval: Duration,
    /// `recorded` of the answer to `ts=0` (a fixed second, so that answer is deterministic).
    base: u64,
    rng: Mutex<Rng>,
    next_slot: Mutex<HashMap<String, Instant>>,
}

impl FaultRt {
    /// Renders the payloads of `spec.data` and learns what each adds to the ground truth.
    pub(super) fn build(stream: Stream, spec: FaultSpec) -> FaultRt {
        let pool = GenPool::build(stream, &spec.data);
        let rows = (0..pool.variants()).map(|i| pool.variant_rows(i)).collect();
        let base = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(1) - 1;
        FaultRt {
            stream,
            pool,
            rows,
            rate: AtomicU64::new(spec.rate.clamp(0.0, 1.0).to_bits()),
            kinds: spec.kinds,
            oversize: spec.oversize_bytes,
            interval: spec.min_interval,
            base,
            rng: Mutex::new(Rng::new(spec.seed)),
            next_slot: Mutex::new(HashMap::new()),
        }
    }

    /// Changes the fault probability of later polls.
    pub(super) fn set_rate(&self, rate: f64) {
        self.rate.store(rate.clamp(0.0, 1.0).to_bits(), Ordering::SeqCst);
    }

    /// Bytes of pre-built payloads.
    pub(super) fn heap_bytes(&self) -> usize {
        self.pool.heap_bytes()
    }

    /// Decides the answer to one poll of service `id` (whose FNV hash is `hash`) at `ts`.
    pub(super) fn answer(&self, id: &str, hash: u64, ts: u64, port: u16, books: &Books<'_>) -> Outcome {
        let Books { tallies, settled, count } = *books;
        let settle = |label: String| -> Option<Box<dyn FnOnce() + Send>> {
            let (settled, stream) = (Arc::clone(settled), self.stream);
            Some(Box::new(move || {
                *lock(&settled).entry(stream).or_default().entry(label).or_insert(0) += 1;
            }))
        };
        let recorded = if ts == 0 { self.base } else { ts };
        let variant = self.pool.variant(hash, recorded);
        let prefix = self.pool.prefix(variant);
        let now = Instant::now();
        let (fault, r1) = {
            let mut rng = lock(&self.rng);
            let rate = f64::from_bits(self.rate.load(Ordering::SeqCst));
            let fault = if !self.kinds.is_empty() && rng.unit() < rate {
                Some(self.kinds[rng.range(0, self.kinds.len() as u64 - 1) as usize].clone())
            } else {
                None
            };
            (fault, rng.next_u64())
        };
        let Some(fault) = fault else {
            count("clean");
            let due = {
                let mut slots = lock(&self.next_slot);
                let slot = slots.entry(id.to_string()).or_insert(now);
                let due = (*slot).max(now);
                *slot = due + self.interval;
                due
            };
            let mut resp = Resp::spliced(200, Arc::clone(&prefix), tail(recorded, ""));
            let (tallies, stream, id, rows) =
                (Arc::clone(tallies), self.stream, id.to_string(), Arc::clone(&self.rows[variant]));
            resp.wire = Wire::Tracked(Box::new(move || {
                lock(&tallies).entry((stream, id)).or_default().add(ts, recorded, prefix, &rows);
            }));
            resp.on_sent = settle("clean".to_string());
            return Outcome::Queued(due, resp);
        };
        count(&fault.label());
        let on_sent = settle(fault.label());
        let full_len = prefix.len() + tail(recorded, "").len();
        let resp = match fault {
            Fault::Truncated => {
                let mut resp = Resp::spliced(200, prefix, tail(recorded, ""));
                resp.wire = Wire::Truncate { keep: 1 + (r1 as usize) % (full_len - 1), port };
                resp
            }
            Fault::Malformed => {
                let mut body = prefix.to_vec();
                body.extend_from_slice(&tail(recorded, ""));
                // Cut somewhere in the middle: a complete HTTP answer, never complete JSON.
                let cut = full_len / 10 + (r1 as usize) % (full_len * 8 / 10);
                body.truncate(cut);
                Resp::json(200, body)
            }
            Fault::Oversize => {
                let pad = self.oversize.saturating_sub(full_len) + 1;
                let extra = format!(",\"Padding\":\"{}\"", "x".repeat(pad));
                Resp::spliced(200, prefix, tail(recorded, &extra))
            }
            Fault::Status(code) => {
                if code == 401 || code == 403 || r1 % 2 == 0 {
                    Resp::empty(code)
                } else {
                    Resp::json(code, format!(r#"{{"Error":"injected HTTP {code}"}}"#).into_bytes())
                }
            }
            Fault::Reset => {
                let mut resp = Resp::empty(200);
                resp.wire = Wire::Close { port };
                resp
            }
            Fault::Stall(d) => {
                let mut resp = Resp::empty(200);
                resp.wire = Wire::Close { port };
                resp.on_sent = on_sent;
                return Outcome::Queued(now + d, resp);
            }
            Fault::RateLimited(secs) => {
                let mut resp = Resp::json(429, br#"{"Error":"Too many requests"}"#.to_vec());
                resp.set_header("Retry-After", &secs.to_string());
                resp
            }
        };
        let mut resp = resp;
        resp.on_sent = on_sent;
        Outcome::Queued(now, resp)
    }
}
