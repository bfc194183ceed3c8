//! The time the exporter's schedules follow, as a handle passed to whatever schedules or
//! stamps something (the main loop, the pollers, the state writer). Production uses
//! [`SystemClock`]; a test embedding the exporter passes a clock it steps, so a refresh
//! schedule, an expiry or a write interval can be crossed at once instead of waited for.
//! There is no process-wide clock: whatever reads the time was handed the clock to read.
//!
//! Durations measured for their own sake (how long a request or a write took) and the
//! timeouts of sockets and locks stay on the real clocks: they are about the machine, not
//! the schedule.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of time for schedules and stamps.
pub trait Clock: Send + Sync {
    /// Monotonic time, for schedules (`next refresh at`).
    fn now(&self) -> Instant;

    /// Wall-clock time since the Unix epoch, for stamps (last success, a row's last data) and
    /// what is compared with them (expiry cutoffs, catching up).
    fn unix(&self) -> Duration;

    /// How long a thread waiting until `deadline` on this clock may block before it looks at
    /// the clock again. The system clock: until the deadline. A clock that a test steps
    /// returns a short real pause, so a waiter sees each step promptly.
    fn wait_for(&self, deadline: Instant) -> Duration {
        deadline.saturating_duration_since(self.now())
    }

    /// [`Clock::unix`] in whole seconds.
    fn unix_secs(&self) -> u64 {
        self.unix().as_secs()
    }

    /// [`Clock::unix`] in seconds, with fractions.
    fn unix_f64(&self) -> f64 {
        self.unix().as_secs_f64()
    }
}

/// A clock handle, cheap to clone into every thread that needs one.
pub type SharedClock = Arc<dyn Clock>;

/// The machine's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix(&self) -> Duration {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
    }
}

impl SystemClock {
    /// The system clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_waits_until_the_deadline() {
        let c = SystemClock;
        let soon = c.now() + Duration::from_secs(5);
        assert!(c.wait_for(soon) > Duration::from_secs(4));
        assert_eq!(c.wait_for(c.now()), Duration::ZERO);
        assert!(c.unix_secs() > 1_600_000_000);
    }
}
