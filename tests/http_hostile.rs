//! Hostile and careless clients against the real binary: oversized request lines and
//! headers, a 64 MiB header attack, thousands of idle and slow-header connections, and
//! handlers that panic. Whatever they do, memory stays bounded, scrapes are answered and no
//! worker is lost.

use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use fake_fastly::Reply;
use support::expo;
use support::{
    Exporter, FakeFastly, FakeService, RssSampler, StreamMode, fake_with, rss_bytes, rt_data, start_against,
};
use support::{start_against_env, try_get};

const MIB: u64 = 1 << 20;

fn quiet_fake(n: usize) -> FakeFastly {
    let services = (0..n).map(|i| FakeService::new(format!("h{i}"), format!("hostile-{i}"), 1)).collect();
    fake_with(services, StreamMode::Script(vec![Reply::new(200, rt_data(100, &[("AMS", 5)]))]))
}

fn scrape_ok(exp: &Exporter) -> expo::Scrape {
    let (status, _, body) = try_get(&exp.url("/metrics"), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("scrape failed: {e}\n{}", exp.output()));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    expo::parse(&String::from_utf8_lossy(&body))
}

fn self_metric(m: &expo::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.find(name, labels).first().copied().unwrap_or_else(|| panic!("{name} {labels:?} missing"))
}

/// Raises this process's open-file limit to its hard limit (the tests open thousands of
/// sockets).
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read or write the struct we pass.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// Sends a raw request head and reads the status line of the answer (None: the connection
/// was closed or reset without an answer).
fn raw_status(addr: &str, head: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let _ = s.write_all(head);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    std::str::from_utf8(&buf).ok()?.split(' ').nth(1)?.parse().ok()
}

#[test]
fn request_lines_over_8k_get_414_and_headers_over_64k_get_431() {
    let fake = quiet_fake(1);
    let exp = start_against(&fake, "T", &[]);
    let addr = exp.addr.clone();
    let long_path = format!("/metrics?target={}", "x".repeat(9 * 1024));
    assert_eq!(raw_status(&addr, format!("GET {long_path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()), Some(414));
    // Just under the limits: served normally.
    let path = format!("/healthz?pad={}", "x".repeat(7 * 1024));
    assert_eq!(
        raw_status(&addr, format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes()),
        Some(200)
    );
    let header =
        |n: usize| format!("GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Pad: {}\r\n\r\n", "y".repeat(n));
    assert_eq!(raw_status(&addr, header(60 * 1024).as_bytes()), Some(200));
    assert_eq!(raw_status(&addr, header(65 * 1024).as_bytes()), Some(431));
    // Many header lines that together pass the limit.
    let many: String = (0..2000).map(|i| format!("X-H{i}: {}\r\n", "z".repeat(40))).collect();
    assert_eq!(raw_status(&addr, format!("GET /healthz HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes()), Some(431));
    let m = scrape_ok(&exp);
    let refused = |r| self_metric(&m, "fastly_exporter_http_requests_refused_total", &[("reason", r)]);
    assert_eq!(refused("request_line_too_long"), 1.0);
    assert_eq!(refused("headers_too_large"), 2.0);
}

/// Writes a 64 MiB header as fast as the server takes it; returns the status the server
/// answered, or None when it closed the connection first.
fn header_attacker(addr: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(30))).ok()?;
    let block = vec![b'a'; MIB as usize];
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\nX-Attack: ");
    for _ in 0..64 {
        if s.write_all(&block).is_err() {
            break;
        }
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) if n > 0 => std::str::from_utf8(&buf[..n]).ok()?.split(' ').nth(1)?.parse().ok(),
        _ => None,
    }
}

#[test]
fn fifty_clients_sending_64_mib_headers_cost_bounded_memory_and_scrapes_go_on() {
    let fake = quiet_fake(3);
    let exp = start_against(&fake, "T", &[]);
    exp.wait_for("data", Duration::from_secs(30), |m| !m.find("fastly_rt_requests_total", &[]).is_empty());
    let before = rss_bytes(exp.pid()).expect("rss");
    let sampler = RssSampler::start(exp.pid());
    let addr = exp.addr.clone();
    let stop = Arc::new(AtomicBool::new(false));
    // 50 attackers, each sending 64 MiB headers again and again until the scrapes are done.
    let attackers: Vec<_> = (0..50)
        .map(|_| {
            let (addr, stop) = (addr.clone(), stop.clone());
            thread::spawn(move || {
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::SeqCst) || outcomes.is_empty() {
                    outcomes.push(header_attacker(&addr));
                }
                outcomes
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    for i in 0..20 {
        let r = try_get(&exp.url("/metrics"), Duration::from_secs(30));
        assert!(r.as_ref().is_ok_and(|(s, _, _)| *s == 200), "scrape {i} during the attack: {:?}", r.map(|r| r.0));
    }
    stop.store(true, Ordering::SeqCst);
    let outcomes: Vec<Option<u16>> = attackers.into_iter().flat_map(|h| h.join().expect("attacker")).collect();
    let peak = sampler.max();
    let answered = outcomes.iter().filter(|o| **o == Some(431)).count();
    let closed = outcomes.iter().filter(|o| o.is_none()).count();
    eprintln!(
        "header attack: 50 clients sent {} headers of 64 MiB: {answered} got 431, {closed} saw the connection \
         closed; 20 scrapes answered meanwhile; RSS {:.1} MiB → peak {:.1} MiB (+{:.1} MiB)",
        outcomes.len(),
        before as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        peak.saturating_sub(before) as f64 / MIB as f64
    );
    assert_eq!(answered + closed, outcomes.len(), "every attacker gets 431 or a closed connection: {outcomes:?}");
    assert!(peak.saturating_sub(before) < 32 * MIB, "RSS grew by {} MiB", peak.saturating_sub(before) / MIB);
    let m = scrape_ok(&exp);
    assert!(self_metric(&m, "fastly_exporter_http_requests_refused_total", &[("reason", "headers_too_large")]) >= 50.0);
}

/// A client that sends a request head one byte per `every`, until `stop`.
fn slow_header_sender(addr: String, every: Duration, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let Ok(mut s) = TcpStream::connect(&addr) else { return };
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ");
        while !stop.load(Ordering::SeqCst) {
            if s.write_all(b"a").is_err() {
                return;
            }
            thread::sleep(every);
        }
    })
}

#[test]
fn with_2000_idle_sockets_and_300_slow_header_senders_a_scrape_still_answers() {
    let limit = raise_nofile();
    assert!(limit >= 5000, "open-file limit {limit} too low for this test (run `ulimit -n 65536`)");
    let fake = quiet_fake(3);
    let mut exp = start_against(&fake, "T", &[]);
    exp.wait_for("data", Duration::from_secs(30), |m| !m.find("fastly_rt_requests_total", &[]).is_empty());
    let addr = exp.addr.clone();
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(TcpStream::connect(&addr).expect("connect"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let slow: Vec<_> =
        (0..300).map(|_| slow_header_sender(addr.clone(), Duration::from_millis(500), stop.clone())).collect();
    thread::sleep(Duration::from_secs(2));
    for i in 0..5 {
        let m = scrape_ok(&exp);
        let open = self_metric(&m, "fastly_exporter_http_connections", &[]);
        assert!(open <= 512.0, "scrape {i}: {open} connections open, over the default cap of 512");
    }
    assert_eq!(exp.get("/healthz").0, 200);
    let m = scrape_ok(&exp);
    let evicted = self_metric(&m, "fastly_exporter_http_connections_evicted_total", &[]);
    eprintln!("2,000 idle + 300 slow-header connections: {evicted} idle connections evicted to make room");
    assert!(evicted >= 1700.0, "only {evicted} evicted");
    stop.store(true, Ordering::SeqCst);
    for h in slow {
        let _ = h.join();
    }
    drop(idle);
    assert_eq!(exp.wait_exit(Duration::ZERO), None, "the exporter died:\n{}", exp.output());
}

#[test]
fn silent_and_slow_header_connections_are_closed_after_the_header_timeout() {
    let fake = quiet_fake(1);
    let exp = start_against(&fake, "T", &[]);
    let addr = exp.addr.clone();
    // A connection that never sends anything is closed without an answer.
    let silent = thread::spawn({
        let addr = addr.clone();
        move || {
            let mut s = TcpStream::connect(&addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
            let started = Instant::now();
            let mut buf = Vec::new();
            let r = s.read_to_end(&mut buf);
            (started.elapsed(), r.map_err(|e| e.kind()), buf)
        }
    });
    // A head trickling in one byte a second never completes: 408, then closed.
    let slow = thread::spawn(move || {
        let mut s = TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(1000))).unwrap();
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ");
        let started = Instant::now();
        let mut got = Vec::new();
        while started.elapsed() < Duration::from_secs(90) {
            let _ = s.write_all(b"a");
            let mut buf = [0u8; 256];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        (started.elapsed(), got)
    });
    let (silent_after, silent_result, silent_bytes) = silent.join().expect("silent client");
    let (slow_after, slow_bytes) = slow.join().expect("slow client");
    eprintln!("silent connection closed after {silent_after:.1?}, slow header after {slow_after:.1?}");
    assert!(silent_result.is_ok() && silent_bytes.is_empty(), "silent: {silent_result:?} {silent_bytes:?}");
    assert!(silent_after < Duration::from_secs(90), "the silent connection was never closed");
    assert!(
        String::from_utf8_lossy(&slow_bytes).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&slow_bytes)
    );
    assert!(slow_after < Duration::from_secs(90), "the slow header connection was never closed");
}

/// Requests `/metrics` and returns the status, and whether the body arrived complete.
fn metrics_outcome(exp: &Exporter) -> (Option<u16>, bool) {
    match try_get(&exp.url("/metrics"), Duration::from_secs(30)) {
        Ok((status, _, body)) => (Some(status), status != 200 || body.ends_with(b"\n")),
        // A body cut off by the server closing the connection: the chunked framing is broken.
        Err(_) => (None, false),
    }
}

#[test]
fn panics_before_the_head_answer_500_and_no_worker_is_lost() {
    let fake = quiet_fake(2);
    let mut exp = start_against_env(&fake, Some("T"), &[], &[("FASTLY_EXPORTER_DEBUG_HTTP_PANICS", "20")]);
    for i in 0..20 {
        assert_eq!(metrics_outcome(&exp), (Some(500), true), "request {i}");
    }
    // Every worker answered (8 workers; sequential and concurrent requests reach them all).
    for _ in 0..24 {
        scrape_ok(&exp);
    }
    let ok = thread::scope(|s| {
        let hs: Vec<_> = (0..16).map(|_| s.spawn(|| metrics_outcome(&exp) == (Some(200), true))).collect();
        hs.into_iter().map(|h| h.join().expect("scrape thread")).filter(|ok| *ok).count()
    });
    assert_eq!(ok, 16);
    let m = scrape_ok(&exp);
    assert_eq!(self_metric(&m, "fastly_exporter_http_panics_total", &[]), 20.0);
    let log = exp.output();
    let lines = log.lines().filter(|l| l.contains("panicked at")).count();
    assert_eq!(lines, 1, "one log line per panic location:\n{log}");
    assert!(!log.contains("thread '"), "the default panic message leaked into the log:\n{log}");
    // Shutdown does not wait for the 20 dead requests.
    let started = Instant::now();
    exp.signal("TERM");
    assert_eq!(exp.wait_exit(Duration::from_secs(5)), Some(Some(0)));
    assert!(started.elapsed() < Duration::from_secs(3), "SIGTERM took {:?}", started.elapsed());
}

#[test]
fn panics_mid_body_close_the_connection_and_no_worker_is_lost() {
    let fake = quiet_fake(2);
    let exp = start_against_env(&fake, Some("T"), &[], &[("FASTLY_EXPORTER_DEBUG_HTTP_PANICS", "body:20")]);
    for i in 0..20 {
        let (status, complete) = metrics_outcome(&exp);
        assert!(!complete && status.is_none(), "request {i}: a cut-off body must not look complete: {status:?}");
    }
    for _ in 0..24 {
        scrape_ok(&exp);
    }
    let m = scrape_ok(&exp);
    assert_eq!(self_metric(&m, "fastly_exporter_http_panics_total", &[]), 20.0);
    assert_eq!(exp.get("/healthz").0, 200);
}

/// Upstream tiny_http stops accepting for good on its first `accept()` error. Run out of file
/// descriptors (EMFILE) on purpose: once clients let go, the server accepts again.
///
/// A connection takes three descriptors (the accepted socket, the connection table's clone and
/// the read half), and which of the three calls runs out depends on the descriptor count modulo
/// three, so the test runs at three consecutive limits: each of them fails first somewhere else.
/// (CI once caught the read-half split panicking the accept thread, about one run in three.)
#[test]
fn the_server_accepts_again_after_running_out_of_file_descriptors() {
    raise_nofile();
    for nofile in [64, 65, 66] {
        accepts_again_after_emfile(nofile);
    }
}

fn accepts_again_after_emfile(nofile: u32) {
    let fake = quiet_fake(1);
    let url = fake.url();
    let exp = Exporter::start_limited(&["-token", "T", "-api-endpoint", &url, "-rt-endpoint", &url], &[], Some(nofile));
    assert_eq!(exp.get("/healthz").0, 200);
    // Once the accept queue is full, connects wait for SYN retries: give up on those quickly.
    let sa: std::net::SocketAddr = exp.addr.parse().expect("address");
    let mut held = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = TcpStream::connect_timeout(&sa, Duration::from_millis(200)) {
            held.push(s);
        }
    }
    thread::sleep(Duration::from_millis(500));
    drop(held);
    let released = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    let m = loop {
        if let Ok((200, _, body)) = try_get(&exp.url("/metrics"), Duration::from_secs(5)) {
            break expo::parse(&String::from_utf8_lossy(&body));
        }
        assert!(Instant::now() < deadline, "the server never accepted again:\n{}", exp.output());
        thread::sleep(Duration::from_millis(100));
    };
    let errors = self_metric(&m, "fastly_exporter_http_accept_errors_total", &[]);
    eprintln!(
        "EMFILE at {nofile} descriptors: {errors} failed accept() calls, then served again {:.1?} after the clients let go",
        released.elapsed()
    );
    assert!(errors >= 1.0, "no accept error happened; the test did not exhaust descriptors");
    assert_eq!(exp.get("/healthz").0, 200);
    let log = exp.output();
    assert!(!log.contains("panicked"), "a thread panicked at {nofile} descriptors:\n{log}");
    // Logged once per state change: every error line opens a run of failures and one recovery
    // line closes it, only once a connection is really set up (a failed split used to end the
    // run at accept() and log the error again: 176 lines for 176 failures at 65 descriptors).
    let count = |what: &str| exp.output().matches(what).count();
    support::wait_until(
        "one recovery line per error line",
        Duration::from_secs(5),
        || count("Error accepting new client") == count("accepting connections again"),
        || exp.output(),
    );
    let runs = count("accepting connections again");
    eprintln!("EMFILE at {nofile} descriptors: {errors} failures in {runs} logged runs");
    assert!(runs >= 1, "no run of accept errors was logged:\n{}", exp.output());
    // A run ends only when descriptors free up mid-exhaustion (the exporter's own upstream
    // connections), a few times at most; with the split bug every failure was a run of one.
    assert!(2.0 * runs as f64 <= errors, "{runs} logged runs for {errors} failures:\n{}", exp.output());
}
