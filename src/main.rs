//! `fastly-exporter`: parse the configuration, set up logging and signals, run.
//! Exit codes: 0 after a clean shutdown, 1 when start-up fails, 2 for configuration errors.

use std::process::ExitCode;

use fastly_exporter::app;
use fastly_exporter::config::{self, Command};

/// The static (musl) build: the C library's malloc behind a small per-thread cache for the
/// pollers (`util::thread_cache`). The glibc build keeps glibc's allocator, tuned by
/// `app::tune_allocator`.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
#[global_allocator]
static ALLOCATOR: app::Allocator = app::Allocator;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match config::load(&args, &|k| std::env::var(k).ok()) {
        Ok(Command::Run(cfg)) => {
            // Before any thread: may start this process again (glibc, once).
            app::tune_allocator();
            cfg
        }
        Ok(Command::Help) => {
            print!("{}", config::usage());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            let b = app::build_info();
            println!(
                "fastly-exporter v{} (revision {}, branch {}, {})",
                b.version, b.revision, b.branch, b.rustversion
            );
            return ExitCode::SUCCESS;
        }
        Ok(Command::ConfigFileExample) => {
            print!("{}", config::example_config_file());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fastly-exporter: {}", app::error_chain(&e));
            return ExitCode::from(2);
        }
    };
    // Trusted CA roots, as Go reads them (SSL_CERT_FILE, SSL_CERT_DIR, the system store); a
    // setting that points at nothing usable is a configuration error.
    let trust = match app::load_trust(&|k| std::env::var(k).ok()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("fastly-exporter: {}", app::error_chain(&e));
            return ExitCode::from(2);
        }
    };
    let level = if cfg.debug { log::LevelFilter::Debug } else { log::LevelFilter::Info };
    let logger = simple_logger::SimpleLogger::new()
        .with_level(level)
        // Dependencies stay quiet even with -debug: our own per-request lines say what matters.
        .with_module_level("ureq", log::LevelFilter::Warn)
        .with_module_level("ureq_proto", log::LevelFilter::Warn)
        .with_module_level("rustls", log::LevelFilter::Warn)
        // tiny_http's only info line is our patch's "accepting connections again", the other
        // half of its accept-error line: both state changes show at the default level.
        .with_module_level("tiny_http", log::LevelFilter::Info.min(level));
    if let Err(e) = logger.init() {
        eprintln!("fastly-exporter: cannot start logging: {e}");
    }
    log::info!("TLS: trusting {trust}");
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    let reload = move || match config::load(&args, &|k| std::env::var(k).ok()) {
        Ok(Command::Run(cfg)) => Ok(*cfg),
        Ok(_) => Err(config::ConfigError::new("the command line no longer runs the exporter")),
        Err(e) => Err(e),
    };
    // Returns after SIGTERM/SIGINT and a clean shutdown: the exit code is ours, not the
    // library's.
    match app::run(*cfg, &trust, Box::new(reload)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{}", app::error_chain(&e));
            ExitCode::from(1)
        }
    }
}
