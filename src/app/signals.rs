//! The process's signals, read on the thread that runs the exporter (`app::run`), so shutdown
//! never waits for the main loop (which may be inside a 15 s API call).

use std::time::Duration;

/// How long SIGTERM waits for in-flight scrapes (the whole exit stays < 2 s).
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// SIGTERM, SIGINT and SIGHUP, queued from the moment [`Signals::install`] returns (until
/// then their default actions apply).
pub(super) struct Signals(signal_hook::iterator::Signals);

impl Signals {
    /// Installs the handlers.
    pub fn install() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        Ok(Signals(signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?))
    }

    /// Blocks until SIGTERM or SIGINT (logged), calling `reload` for each SIGHUP.
    pub fn until_stop(&mut self, reload: impl Fn()) {
        use signal_hook::consts::{SIGHUP, SIGTERM};
        for sig in self.0.forever() {
            if sig == SIGHUP {
                log::info!("SIGHUP: reloading configuration and refreshing");
                reload();
                continue;
            }
            let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
            log::info!("{name}: shutting down");
            return;
        }
    }
}
