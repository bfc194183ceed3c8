//! Signal handling on a dedicated thread, so shutdown never waits for the main loop (which
//! may be inside a 15 s API call).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long SIGTERM waits for in-flight scrapes before exiting (the whole exit stays < 2 s).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// SIGTERM/SIGINT run `shutdown` (stop serving, give in-flight scrapes `SHUTDOWN_GRACE`) and
/// exit 0; pollers blocked in long polls are simply abandoned. SIGHUP sets `reload` for the
/// main loop.
pub(super) struct Signals {
    /// Set by SIGHUP, cleared by the main loop when it reloads.
    pub reload: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handlers and starts the signal thread.
    pub fn install(shutdown: impl Fn(Duration) + Send + 'static) -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        let reload = Arc::new(AtomicBool::new(false));
        let flag = reload.clone();
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    log::info!("SIGHUP: reloading configuration and refreshing");
                    flag.store(true, Ordering::SeqCst);
                    continue;
                }
                let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
                log::info!("{name}: shutting down");
                shutdown(SHUTDOWN_GRACE);
                std::process::exit(0);
            }
        })?;
        Ok(Signals { reload })
    }
}
