//! The exporter run inside the test process (the library's `app::start`), with a clock the
//! test steps: for tests whose subject is a schedule (a backoff, an expiry), so they can
//! cross it at once and see the exporter act on the new time, instead of sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fastly_exporter::app::{self, Clock, Options, Running};
use fastly_exporter::config::{self, Command};

use super::{FakeFastly, expo};

/// A clock that moves only when the test steps it. It also records, per thread, the last
/// time the thread looked at it before waiting (`wait_for`) and at which step: that a thread
/// has waited on the clock since a step is the event showing it has acted on the new time.
pub struct ManualClock {
    base: Instant,
    unix_base: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    offset: Duration,
    step: u64,
    /// Thread name → the step at which it last waited, and the deadline it waited for.
    waited: HashMap<String, (u64, Instant)>,
}

/// How long a waiter blocks (real time) before it looks at a manual clock again.
const LOOK_AGAIN: Duration = Duration::from_millis(2);

impl ManualClock {
    /// A clock reading the real time now, then standing still.
    pub fn new() -> Arc<ManualClock> {
        let unix_base = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        Arc::new(ManualClock { base: Instant::now(), unix_base, state: Mutex::default() })
    }

    /// Moves the clock forward; returns the new step's number.
    pub fn advance(&self, d: Duration) -> u64 {
        let mut s = self.state.lock().unwrap();
        s.offset += d;
        s.step += 1;
        s.step
    }

    /// Time elapsed on this clock since it was made.
    pub fn elapsed(&self) -> Duration {
        self.state.lock().unwrap().offset
    }

    /// Waits (real time, up to `timeout`) until a thread whose name starts with `thread` has
    /// waited on the clock at step `step` or later, i.e. has looked at the time after that
    /// step and found nothing due; returns the deadline it waits for.
    pub fn waited_since(&self, thread: &str, step: u64, timeout: Duration) -> Instant {
        let until = Instant::now() + timeout;
        loop {
            let found = {
                let s = self.state.lock().unwrap();
                s.waited.iter().find(|(n, (at, _))| n.starts_with(thread) && *at >= step).map(|(_, (_, d))| *d)
            };
            if let Some(deadline) = found {
                return deadline;
            }
            assert!(Instant::now() < until, "no thread {thread}* waited on the clock since step {step}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// How far `deadline` is from this clock's now (zero when passed).
    pub fn until(&self, deadline: Instant) -> Duration {
        deadline.saturating_duration_since(self.now())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + self.state.lock().unwrap().offset
    }

    fn unix(&self) -> Duration {
        self.unix_base + self.state.lock().unwrap().offset
    }

    fn wait_for(&self, deadline: Instant) -> Duration {
        let mut s = self.state.lock().unwrap();
        let now = self.base + s.offset;
        if now >= deadline {
            return Duration::ZERO;
        }
        let step = s.step;
        if let Some(name) = std::thread::current().name() {
            s.waited.insert(name.to_string(), (step, deadline));
        }
        LOOK_AGAIN
    }
}

/// Everything exporters in this process logged (at the binary's default level, info), in
/// order: the log crate has one logger per process, so every in-process exporter of a test
/// binary writes here.
pub fn log_text() -> String {
    CAPTURED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

static CAPTURED: Mutex<String> = Mutex::new(String::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let line = format!("{:<5} [{}] {}\n", r.level(), r.target(), r.args());
            CAPTURED.lock().unwrap_or_else(|p| p.into_inner()).push_str(&line);
        }
    }

    fn flush(&self) {}
}

fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if log::set_logger(&Capture).is_ok() {
            log::set_max_level(log::LevelFilter::Info);
        }
    });
}

/// An exporter running in this process.
pub struct InProcess {
    running: Option<Running>,
    pub addr: String,
}

impl InProcess {
    /// Starts the exporter with `args` (plus `-listen 127.0.0.1:0`), no environment, the
    /// system's CA roots, and `clock`.
    pub fn start(args: &[&str], clock: Arc<dyn Clock>) -> InProcess {
        capture_logs();
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(["-listen".to_string(), "127.0.0.1:0".to_string()]);
        let cfg = match config::load(&all, &|_| None) {
            Ok(Command::Run(cfg)) => *cfg,
            other => panic!("{args:?}: {other:?}"),
        };
        let trust = app::load_trust(&|_| None).expect("trust");
        let reload = move || match config::load(&all, &|_| None) {
            Ok(Command::Run(cfg)) => Ok(*cfg),
            _ => Err(config::ConfigError::new("not a run")),
        };
        let running = app::start(cfg, &trust, Options { clock, reload: Box::new(reload) }).expect("starts");
        let addr = running.addr().to_string();
        InProcess { running: Some(running), addr }
    }

    /// Starts it against `fake` (both endpoints), token `T`, plus `extra`.
    pub fn against(fake: &FakeFastly, extra: &[&str], clock: Arc<dyn Clock>) -> InProcess {
        InProcess::against_token(fake, "T", extra, clock)
    }

    /// Like [`InProcess::against`] with another token.
    pub fn against_token(fake: &FakeFastly, token: &str, extra: &[&str], clock: Arc<dyn Clock>) -> InProcess {
        let url = fake.url();
        let mut args = vec!["-token", token, "-api-endpoint", &url, "-rt-endpoint", &url];
        args.extend_from_slice(extra);
        InProcess::start(&args, clock)
    }

    /// The running exporter.
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// The full `/metrics` scrape, parsed.
    pub fn metrics(&self) -> expo::Scrape {
        let (status, body) = super::get(&format!("http://{}/metrics", self.addr), &[]);
        assert_eq!(status, 200, "{body}");
        expo::parse(&body)
    }

    /// Scrapes until `pred` holds, or panics after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&expo::Scrape) -> bool) -> expo::Scrape {
        super::scrape_until(
            what,
            timeout,
            Duration::from_millis(20),
            || self.metrics(),
            pred,
            || "in-process exporter".to_string(),
        )
    }

    /// Shuts it down as SIGTERM does (with `grace` for scrapes); what the shutdown reported.
    pub fn shutdown(mut self, grace: Duration) -> app::Stopped {
        self.running.take().expect("running").shutdown(grace)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::ZERO);
        }
    }
}
