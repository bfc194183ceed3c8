//! The exporter started and stopped inside the test process (`app::start`, `Running`): a
//! shutdown ends every thread it started, promptly, even with pollers held in long polls and
//! clients connected, and keeps SIGTERM's order (the last state file write included).
//! (`robustness.rs` and `state_file.rs` check the same through the binary and real signals.)

use crate::support;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_fastly::{Reply, Stream};
use fastly_exporter::app::{JOIN_LIMIT, SHUTDOWN_GRACE, SystemClock};
use support::inproc::{InProcess, ManualClock};
use support::{FakeService, StreamMode, fake_with, fixture, rt_no_data, rt_polls, temp_path, wait_until};

const T: Duration = Duration::from_secs(30);

/// The tests here count the process's threads: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Names of this process's threads that the exporter starts (as the kernel shows them,
/// truncated to 15 bytes).
fn exporter_threads() -> BTreeSet<String> {
    // tiny_http's threads are `http-accept` and `http-conn` in the exporter (the fake's keep
    // tiny_http's own names); connection openers are `tls-handshake`.
    let prefixes = ["poll-", "http-", "main-loop", "state-writer", "web-watch", "tls-handshake"];
    let mut names = BTreeSet::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if prefixes.iter().any(|p| comm.starts_with(p)) {
            names.insert(format!("{comm} ({})", task.file_name().to_string_lossy()));
        }
    }
    names
}

#[test]
fn shutdown_ends_every_thread_even_with_long_polls_held_and_clients_connected() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    assert!(exporter_threads().is_empty(), "{:?}", exporter_threads());
    let ids: Vec<String> = (0..6).map(|i| format!("held{i}")).collect();
    let fake = fake_with(
        ids.iter().map(|id| FakeService::new(id.clone(), format!("name {id}"), 1)).collect(),
        StreamMode::FixtureThenHold { body: fixture("realtime.json"), hold: Duration::from_secs(40) },
    );
    let state = temp_path("lifecycle-state");
    let exp = InProcess::against(&fake, &["-state-file", state.to_str().unwrap()], SystemClock::shared());
    exp.wait_for("every service's data", T, |m| {
        ids.iter().all(|id| !m.find("fastly_rt_requests_total", &[("service_id", id)]).is_empty())
    });
    wait_until(
        "every poller held in a long poll",
        T,
        || ids.iter().all(|id| rt_polls(&fake, id).len() >= 2),
        String::new,
    );
    // An idle keep-alive connection and one that sent half a request head: each holds a
    // tiny_http connection thread reading.
    let idle = TcpStream::connect(&exp.addr).unwrap();
    let mut half = TcpStream::connect(&exp.addr).unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
    wait_until(
        "both connections taken",
        T,
        || exp.metrics().get("fastly_exporter_http_connections").is_some_and(|n| n >= 3.0),
        String::new,
    );
    let during = exporter_threads();
    assert!(during.iter().filter(|t| t.starts_with("poll-rt-")).count() == ids.len(), "{during:?}");
    assert!(during.iter().any(|t| t.starts_with("http-conn")), "{during:?}");

    let started = Instant::now();
    let stopped = exp.shutdown(SHUTDOWN_GRACE);
    let took = started.elapsed();
    assert!(stopped.still_running.is_empty(), "{:?}", stopped.still_running);
    assert_eq!(stopped.last_write, Some(true));
    assert!(std::fs::metadata(&state).is_ok_and(|m| m.len() > 0), "the last state write");
    // Nothing in flight: nothing waited for the grace, and the long polls were interrupted
    // (40 s holds), not waited out.
    assert!(took < SHUTDOWN_GRACE + JOIN_LIMIT, "shutdown took {took:?}");
    assert!(exporter_threads().is_empty(), "threads left after shutdown: {:?}", exporter_threads());
    drop((idle, half));
    let _ = std::fs::remove_file(&state);
}

#[test]
fn an_exporter_starts_again_in_the_same_process_and_resumes_from_its_state_file() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let fake = fake_with(
        vec![FakeService::new("again", "again", 1)],
        StreamMode::FixtureThenHold { body: fixture("realtime.json"), hold: Duration::from_secs(40) },
    );
    let state = temp_path("lifecycle-again");
    let args = ["-state-file", state.to_str().unwrap()];
    let requests = |m: &support::expo::Scrape| m.find("fastly_rt_requests_total", &[("service_id", "again")]);
    let first = InProcess::against(&fake, &args, SystemClock::shared());
    let before = first.wait_for("data", T, |m| !requests(m).is_empty());
    assert!(first.shutdown(SHUTDOWN_GRACE).still_running.is_empty());
    // The next poll says "No data": the restored stream has caught up at once, nothing new.
    fake.state()
        .set_stream_mode(Stream::Realtime, StreamMode::Script(vec![Reply::new(200, rt_no_data(1_700_000_000))]));
    let second = InProcess::against(&fake, &args, SystemClock::shared());
    // The restored rows, exactly.
    let after = second.wait_for("restored rows", T, |m| !requests(m).is_empty());
    assert_eq!(requests(&after), requests(&before));
    assert!(second.shutdown(SHUTDOWN_GRACE).still_running.is_empty());
    assert!(exporter_threads().is_empty(), "{:?}", exporter_threads());
    let _ = std::fs::remove_file(&state);
}

#[test]
fn the_main_loop_follows_the_clock_it_is_given() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let fake = fake_with(vec![FakeService::new("tick", "tick", 1)], StreamMode::NotFound);
    let clock = ManualClock::new();
    let exp = InProcess::against(&fake, &["-service-refresh", "1m"], clock.clone() as Arc<_>);
    wait_until("the first service list", T, || fake.state().count("/service?") >= 1, String::new);
    // The main loop waits for the next refresh, a minute away on its clock.
    clock.waited_since("main-loop", 0, T);
    let step = clock.advance(Duration::from_secs(59));
    let next = clock.waited_since("main-loop", step, T);
    assert_eq!(clock.until(next), Duration::from_secs(1));
    assert_eq!(fake.state().count("/service?"), 1, "refreshed before -service-refresh passed");
    clock.advance(Duration::from_secs(1));
    wait_until("the second service list", T, || fake.state().count("/service?") == 2, String::new);
    assert!(exp.shutdown(Duration::ZERO).still_running.is_empty());
}
