use fastly_exporter::catalog::{Stream, catalog};
use fastly_exporter::fake::{GenSpec, Stream as FS, sample_bodies};
use fastly_exporter::realtime::parse::{Mode, parse_response};
use fastly_exporter::table::{Batch, Scratch, StreamTable};
use std::time::Instant;
fn main() {
    let bodies = sample_bodies(FS::Realtime, &GenSpec::default());
    let mut b = Batch::default();
    let mut s = Scratch::default();
    let mut t = StreamTable::default();
    let def = catalog().stream(Stream::Realtime);
    let n = 20000;
    let bytes: usize = bodies.iter().map(|b| b.len()).sum::<usize>() / bodies.len();
    let t0 = Instant::now();
    for i in 0..n {
        parse_response(&bodies[i % bodies.len()], Stream::Realtime, Mode::PerDatacenter, &mut b).unwrap();
    }
    let p = t0.elapsed().as_secs_f64() / n as f64 * 1e6;
    let t0 = Instant::now();
    for _ in 0..n {
        t.merge(def, None, &b, &mut s);
    }
    let m = t0.elapsed().as_secs_f64() / n as f64 * 1e6;
    // key lookup cost alone
    let keys: Vec<&str> =
        def.fields.iter().copied().chain(["tls", "object_size_other", "tls_handshake_sent_bytes"]).collect();
    let t0 = Instant::now();
    let mut hits = 0u64;
    for _ in 0..2000 {
        for k in &keys {
            if def.field_bytes(std::hint::black_box(k.as_bytes())).is_some() {
                hits += 1;
            }
        }
    }
    let per = t0.elapsed().as_secs_f64() / (2000 * keys.len()) as f64 * 1e9;
    println!("lookup {per:.1} ns ({hits})");
    println!("body {bytes} B: parse {p:.1} us, merge {m:.1} us, {:.0} MB/s", bytes as f64 / p);
}
#[allow(dead_code)]
fn probe_lookups() {}
