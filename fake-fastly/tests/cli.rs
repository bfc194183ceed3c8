//! The `fake-fastly` binary as `make demo`, the container check and the Helm check run it:
//! it starts on the address asked for, says where it listens, and answers the service list
//! with the services asked for, to the token asked for only. (Building this test is also what
//! builds the binary those checks run: scripts/lib.sh.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

struct Fake(Child);

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary; returns it and the `host:port` it printed.
fn start(args: &[&str]) -> (Fake, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-fastly"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("fake-fastly starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let fake = Fake(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("reads the first line");
    let url = line.trim().strip_prefix("fake-fastly listening on ").unwrap_or_else(|| panic!("first line: {line:?}"));
    let addr = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    (fake, addr)
}

/// One HTTP/1.0 GET; returns the status and the body.
fn get(addr: &str, path: &str, token: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connects");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nFastly-Key: {token}\r\n\r\n").expect("writes");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("reads until close");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("head: {head:?}"));
    (status, body.to_string())
}

#[test]
fn it_serves_the_services_asked_for_to_the_token_asked_for() {
    let (_fake, addr) = start(&["-listen", "127.0.0.1:0", "-services", "3", "-token", "tok-cli"]);
    let (status, body) = get(&addr, "/service?page=1&per_page=100", "tok-cli");
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("a JSON service list");
    let ids: Vec<&str> = list.as_array().expect("an array").iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids.len(), 3, "{body}");
    let (status, _) = get(&addr, "/service?page=1&per_page=100", "another-token");
    assert!(status == 401 || status == 403, "a wrong token got {status}");
}

#[test]
fn a_bad_flag_exits_2_with_the_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-fastly")).arg("-no-such-flag").output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("usage: fake-fastly"), "{err}");
}
