//! `fake-fastly`: a stand-alone fake of api.fastly.com + rt.fastly.com for `make demo` and
//! benchmarks, so the exporter can run without a Fastly account or token.
//!
//! All three real-time streams are generated; the small API endpoints answer canned bodies
//! taken from the upstream test fixtures, adjusted to the generated services.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use std::time::Duration;

use fake_fastly::{
    FakeConfig, FakeFastly, FakeService, GenSpec, Reply, Stream as FakeStream, StreamMode, TlsIdentity,
    datacenters_json, generated_body,
};

const USAGE: &str = "\
usage: fake-fastly [-listen 127.0.0.1:8081] [-services 5] [-datacenters 10]
                   [-origins 2] [-domains 2] [-token T] [-seed 1] [-page-size 1000]
                   [-workers 8] [-once] [-tls-dir DIR] [-failing 0] [-history 120] [-batch 60]
Flags take one dash or two. -origins 0 / -domains 0 disable that product.
-failing N: the real-time stream of the first N services answers HTTP 500 (a status page
       with failing rows).
-history S: seconds of history each stream keeps, as rt.fastly.com keeps 120; a poll for an
       older ts is answered from the oldest second kept. -batch N: most seconds per answer.
-once: each stream answers one generated second, then holds every later poll (a large
       shape, e.g. -domains 1500 -datacenters 15, loaded once and then left still).
-tls-dir DIR: serve HTTPS with a new private CA; DIR/ca.pem is what clients must trust
       (e.g. SSL_CERT_FILE=DIR/ca.pem); DIR/cert.pem and DIR/key.pem are the server's.";

const TOKENS_SELF: &str = include_str!("../../tests/fixtures/api/tokens-self-expires.json");
const ORIGIN_INSPECTOR: &str = include_str!("../../tests/fixtures/api/entitled-products-origin-inspector.json");
const DOMAIN_INSPECTOR: &str = include_str!("../../tests/fixtures/api/entitled-products-domain-inspector.json");
const CERTIFICATES: &str = include_str!("../../tests/fixtures/api/tls-certificates-two.json");
const DICTIONARY_LIST: &str = include_str!("../../tests/fixtures/api/dictionary-list.json");
const DICTIONARY_INFO: [(&str, &str); 2] = [
    ("AsDfAOwejFaNQfAaFRxv2J", include_str!("../../tests/fixtures/api/dictionary-info-dict1.json")),
    ("foobGF34VOKSM0yVzBaQh7", include_str!("../../tests/fixtures/api/dictionary-info-dict2.json")),
];
/// Service id and version baked into the dictionary fixtures, rewritten per service.
const FIXTURE_SERVICE: &str = "qwertMz1ncwA0KC3TBloku";
const FIXTURE_VERSION: &str = "\"version\": 575";

/// Command-line settings.
struct Args {
    listen: String,
    services: usize,
    datacenters: usize,
    origins: usize,
    domains: usize,
    token: Option<String>,
    seed: u64,
    page_size: usize,
    workers: usize,
    once: bool,
    tls_dir: Option<std::path::PathBuf>,
    failing: usize,
    history: u64,
    batch: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:8081".to_string(),
        services: 5,
        datacenters: 10,
        origins: 2,
        domains: 2,
        token: None,
        seed: 1,
        page_size: 1000,
        workers: 8,
        once: false,
        tls_dir: None,
        failing: 0,
        history: 120,
        batch: 60,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let flag = arg.trim_start_matches('-');
        if flag == arg {
            return Err(format!("unexpected argument {arg:?}"));
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.to_string(), None),
        };
        if name == "h" || name == "help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if name == "once" {
            args.once = true;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("-{name} needs a value"))?,
        };
        let num = |v: &str| v.parse::<usize>().map_err(|_| format!("-{name}: {v:?} is not a number"));
        match name.as_str() {
            "listen" => args.listen = value,
            "services" => args.services = num(&value)?,
            "datacenters" => args.datacenters = num(&value)?.max(1),
            "origins" => args.origins = num(&value)?,
            "domains" => args.domains = num(&value)?,
            "token" => args.token = Some(value),
            "seed" => args.seed = num(&value)? as u64,
            "page-size" => args.page_size = num(&value)?.max(1),
            "workers" => args.workers = num(&value)?.max(1),
            "tls-dir" => args.tls_dir = Some(value.into()),
            "failing" => args.failing = num(&value)?,
            "history" => args.history = num(&value)?.max(1) as u64,
            "batch" => args.batch = num(&value)?.max(1) as u64,
            _ => return Err(format!("unknown flag -{name}")),
        }
    }
    Ok(args)
}

/// `svc0000xxxxxxxxxxxxxxx`: 22 characters like a real Fastly id, readable in dashboards.
fn service_id(i: usize) -> String {
    let mut id = format!("svc{i:04}");
    while id.len() < 22 {
        id.push('x');
    }
    id
}

/// A stream generating `entities` per datacenter, or 404 when the product is disabled; with
/// `once`, one generated answer and then held polls.
fn stream(kind: FakeStream, datacenters: usize, entities: usize, seed: u64, once: bool) -> StreamMode {
    let spec = GenSpec { datacenters, entities, seed };
    match (entities, once) {
        (0, _) => StreamMode::NotFound,
        (_, false) => StreamMode::Generated(spec),
        (_, true) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            StreamMode::FixtureThenHold { body: generated_body(kind, &spec, now), hold: Duration::from_secs(3600) }
        }
    }
}

/// Generates a CA and a server certificate for this machine's loopback names and writes them
/// to `dir` (`ca.pem`, `cert.pem`, `key.pem`).
fn tls_identity(dir: &std::path::Path) -> Result<TlsIdentity, String> {
    let id = TlsIdentity::generate("fake-fastly test CA", &["127.0.0.1", "localhost", "::1"])
        .map_err(|e| format!("cannot generate a certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, pem) in [("ca.pem", &id.ca_pem), ("cert.pem", &id.cert_pem), ("key.pem", &id.key_pem)] {
        std::fs::write(dir.join(name), pem).map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
    }
    Ok(id)
}

/// The entitlement body for a product, with `has_access` forced to `access`.
fn entitlement(fixture: &str, access: bool) -> Vec<u8> {
    fixture
        .replace("\"has_access\": false", &format!("\"has_access\": {access}"))
        .replace("\"has_access\": true", &format!("\"has_access\": {access}"))
        .into_bytes()
}

/// `YYYY-MM-DDT00:00:00Z` one year from now, so the demo token never looks expired.
fn date_in_a_year() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Howard Hinnant's days-to-civil algorithm.
    let z = (secs / 86_400 + 365) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T00:00:00Z")
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fake-fastly: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let services: Vec<FakeService> =
        (0..args.services).map(|i| FakeService::new(service_id(i), format!("service-{i}"), i as i64 + 1)).collect();
    let tls = match &args.tls_dir {
        Some(dir) => match tls_identity(dir) {
            Ok(id) => Some(id),
            Err(e) => {
                eprintln!("fake-fastly: -tls-dir: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let (dcs, seed, once) = (args.datacenters, args.seed, args.once);
    let cfg = FakeConfig {
        listen: args.listen.clone(),
        token: args.token.clone(),
        services: services.clone(),
        page_size: args.page_size,
        realtime: stream(FakeStream::Realtime, dcs, 1, seed, once),
        origins: stream(FakeStream::Origins, dcs, args.origins, seed, once),
        domains: stream(FakeStream::Domains, dcs, args.domains, seed, once),
        workers: args.workers,
        tls,
        history_secs: args.history,
        batch_secs: args.batch,
    };
    let started = Instant::now();
    let fake = match FakeFastly::start(cfg) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake-fastly: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let state = fake.state();
    state.set_route("/datacenters", 200, datacenters_json(args.datacenters));
    let expires = TOKENS_SELF.replace("2026-04-18T00:00:00Z", &date_in_a_year());
    state.set_route("/tokens/self", 200, expires.into_bytes());
    state.set_route("/entitled-products/origin_inspector", 200, entitlement(ORIGIN_INSPECTOR, args.origins > 0));
    state.set_route("/entitled-products/domain_inspector", 200, entitlement(DOMAIN_INSPECTOR, args.domains > 0));
    state.set_route("/tls/certificates", 200, CERTIFICATES.as_bytes().to_vec());
    for s in &services {
        let base = format!("/service/{}/version/{}/dictionary", s.id, s.version);
        let list = DICTIONARY_LIST
            .replace(FIXTURE_SERVICE, &s.id)
            .replace(FIXTURE_VERSION, &format!("\"version\": {}", s.version));
        state.set_route(&base, 200, list.into_bytes());
        for (dict, info) in DICTIONARY_INFO {
            state.set_route(&format!("{base}/{dict}/info"), 200, info.as_bytes().to_vec());
        }
    }
    for s in services.iter().take(args.failing) {
        let reply = Reply::new(500, br#"{"Error":"fake-fastly -failing: internal server error"}"#.to_vec());
        state.set_service_reply(FakeStream::Realtime, &s.id, Some(reply));
    }
    eprintln!(
        "fake-fastly: {} services, {} KiB of pre-built payloads, ready in {:?}",
        services.len(),
        state.generated_payload_bytes() / 1024,
        started.elapsed()
    );
    let mut out = std::io::stdout();
    let _ = writeln!(out, "fake-fastly listening on {}", fake.url());
    let _ = out.flush();
    loop {
        std::thread::park();
    }
}
