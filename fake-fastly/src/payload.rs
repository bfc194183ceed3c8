//! Pre-built, realistic real-time payloads for the `Generated` stream mode.
//!
//! The benchmark polls up to 3,000 streams per second, so nothing here runs per request:
//! [`GenPool::build`] renders a handful of complete envelopes once, each cut just before
//! the two numbers that change per answer (`recorded` and `Timestamp`, both placed last).
//! A request then costs one `Arc` clone plus formatting two integers.
//!
//! The pool is shared by all services: the exporter does the same work whatever the
//! service id, and sharing keeps memory flat at 1,000 services (a per-service copy
//! would cost hundreds of megabytes for no extra realism).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use super::fields::{self, Kind};
use super::history::VariantRows;
use super::{GenSpec, Stream};

/// How many distinct envelopes are rendered per stream. Consecutive seconds of one
/// service rotate through them, so counters move by varying amounts.
const VARIANTS: u64 = 16;

/// Percentage of fields present (non-zero) in one datacenter block, as Fastly omits zeros.
const PRESENT_PCT: u64 = 60;

/// Real Fastly POP codes with the `/datacenters` metadata the exporter reads.
/// Beyond this list synthetic codes (`ZAA`, `ZAB`, ...) are used.
const POPS: &[(&str, &str, &str, f64, f64)] = &[
    ("AMS", "Amsterdam", "Europe", 52.308613, 4.763889),
    ("FRA", "Frankfurt", "Europe", 50.0379, 8.5622),
    ("LHR", "London", "Europe", 51.47, -0.4543),
    ("JFK", "New York", "North America", 40.6413, -73.7781),
    ("LAX", "Los Angeles", "North America", 33.9416, -118.4085),
    ("NRT", "Tokyo", "Asia", 35.772, 140.3929),
    ("SYD", "Sydney", "Asia/Pacific", -33.9399, 151.1753),
    ("GRU", "Sao Paulo", "South America", -23.4356, -46.4731),
    ("SIN", "Singapore", "Asia", 1.3644, 103.9915),
    ("CDG", "Paris", "Europe", 49.0097, 2.5479),
    ("IAD", "Ashburn", "North America", 38.9531, -77.4565),
    ("ORD", "Chicago", "North America", 41.9742, -87.9073),
    ("DFW", "Dallas", "North America", 32.8998, -97.0403),
    ("SEA", "Seattle", "North America", 47.4502, -122.3088),
    ("SJC", "San Jose", "North America", 37.3639, -121.9289),
    ("ATL", "Atlanta", "North America", 33.6407, -84.4277),
    ("MIA", "Miami", "North America", 25.7959, -80.287),
    ("BOS", "Boston", "North America", 42.3656, -71.0096),
    ("YYZ", "Toronto", "North America", 43.6777, -79.6248),
    ("YVR", "Vancouver", "North America", 49.1967, -123.1815),
    ("DEN", "Denver", "North America", 39.8561, -104.6737),
    ("MAD", "Madrid", "Europe", 40.4983, -3.5676),
    ("MXP", "Milan", "Europe", 45.6301, 8.7255),
    ("ARN", "Stockholm", "Europe", 59.6498, 17.9238),
    ("CPH", "Copenhagen", "Europe", 55.618, 12.656),
    ("OSL", "Oslo", "Europe", 60.1976, 11.1004),
    ("HEL", "Helsinki", "Europe", 60.3172, 24.9633),
    ("VIE", "Vienna", "Europe", 48.1103, 16.5697),
    ("WAW", "Warsaw", "Europe", 52.1657, 20.9671),
    ("DUB", "Dublin", "Europe", 53.4264, -6.2499),
    ("MAN", "Manchester", "Europe", 53.3588, -2.2727),
    ("BRU", "Brussels", "Europe", 50.901, 4.4844),
    ("HKG", "Hong Kong", "Asia", 22.308, 113.9185),
    ("ICN", "Seoul", "Asia", 37.4602, 126.4407),
    ("BOM", "Mumbai", "Asia", 19.0896, 72.8656),
    ("MAA", "Chennai", "Asia", 12.9941, 80.1709),
    ("DEL", "New Delhi", "Asia", 28.5562, 77.1),
    ("MEL", "Melbourne", "Asia/Pacific", -37.669, 144.841),
    ("BNE", "Brisbane", "Asia/Pacific", -27.3942, 153.1218),
    ("PER", "Perth", "Asia/Pacific", -31.9385, 115.9672),
    ("AKL", "Auckland", "Asia/Pacific", -37.0082, 174.785),
    ("WLG", "Wellington", "Asia/Pacific", -41.327221, 174.805278),
    ("JNB", "Johannesburg", "Africa", -26.1367, 28.2411),
    ("CPT", "Cape Town", "Africa", -33.9715, 18.6021),
    ("SCL", "Santiago", "South America", -33.393, -70.7858),
    ("EZE", "Buenos Aires", "South America", -34.8222, -58.5358),
    ("BOG", "Bogota", "South America", 4.7016, -74.1469),
    ("LIM", "Lima", "South America", -12.0219, -77.1143),
    ("TYO", "Tokyo", "Asia", 35.5494, 139.7798),
    ("ITM", "Osaka", "Asia", 34.7855, 135.4382),
];

/// Datacenter codes used by generated streams: the first `n` real POPs, then synthetic
/// three-letter codes, so any `GenSpec::datacenters` works.
pub fn datacenter_codes(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match POPS.get(i) {
            Some(pop) => pop.0.to_string(),
            None => {
                let k = i - POPS.len();
                let a = (b'A' + ((k / 26) % 26) as u8) as char;
                let b = (b'A' + (k % 26) as u8) as char;
                format!("Z{a}{b}")
            }
        })
        .collect()
}

/// The groups of generated datacenter lists: synthetic POPs (beyond the real ones) take them
/// in turn, as do all POPs of [`datacenters_json_in`] lists.
pub const GROUPS: [&str; 6] = ["Europe", "North America", "Asia/Pacific", "South America", "Africa", "Asia"];

/// A `GET /datacenters` body listing exactly the codes of [`datacenter_codes`]`(n)`,
/// so the exporter's datacenter-info metric and the stream labels agree in a demo. Real POPs
/// keep their real group; synthetic ones are spread over [`GROUPS`].
pub fn datacenters_json(n: usize) -> Vec<u8> {
    let groups: Vec<String> = (0..n)
        .map(|i| match POPS.get(i) {
            Some(pop) => pop.2.to_string(),
            None => GROUPS[(i - POPS.len()) % GROUPS.len()].to_string(),
        })
        .collect();
    render_datacenters(&groups)
}

/// A `GET /datacenters` body for [`datacenter_codes`]`(n)` where POP `i` is in group
/// `groups[i % groups.len()]`, e.g. 60 POPs in exactly 5 groups.
pub fn datacenters_json_in(n: usize, groups: &[&str]) -> Vec<u8> {
    let groups: Vec<String> = (0..n).map(|i| groups[i % groups.len().max(1)].to_string()).collect();
    render_datacenters(&groups)
}

fn render_datacenters(groups: &[String]) -> Vec<u8> {
    let mut out = String::from("[");
    for (i, (code, group)) in datacenter_codes(groups.len()).iter().zip(groups).enumerate() {
        let (name, lat, lon) = match POPS.get(i) {
            Some(&(_, name, _, lat, lon)) => (name.to_string(), lat, lon),
            None => (format!("Synthetic {code}"), 0.0, 0.0),
        };
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"code":"{code}","name":"{name}","group":"{group}","coordinates":{{"x":0,"y":0,"latitude":{lat},"longitude":{lon}}},"shield":"{}"}}"#,
            code.to_ascii_lowercase()
        );
    }
    out.push(']');
    out.into_bytes()
}

/// Tiny deterministic PRNG (xorshift64): reproducible payloads from `GenSpec::seed`
/// without pulling in the `rand` crate.
pub(super) struct Rng(u64);

impl Rng {
    /// Seeds the generator; any seed (including 0) gives a usable non-zero state.
    pub(super) fn new(seed: u64) -> Rng {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        if state == 0 {
            state = 1;
        }
        let mut rng = Rng(state);
        rng.next_u64();
        rng
    }

    /// Next raw 64-bit value.
    pub(super) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform integer in `lo..=hi`.
    pub(super) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `pct` percent.
    fn chance(&mut self, pct: u64) -> bool {
        self.next_u64() % 100 < pct
    }

    /// Uniform float in `[0, 1)`.
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One generated field value.
enum Val {
    Count(u64),
    Float(f64),
    Hist(BTreeMap<u32, u64>),
}

/// One datacenter block (or one origin/domain inside it): fields in reference order.
type Block = Vec<(&'static str, Val)>;

/// Fields that are ratios: generated in `[0, 1]` and averaged (not summed) when aggregated.
fn is_ratio(name: &str) -> bool {
    name.contains("ratio") || name.contains("offload")
}

/// A plausible counter value; magnitudes follow the field's unit so dashboards look sane.
fn count_value(rng: &mut Rng, name: &str) -> u64 {
    if name.contains("ram_used") {
        rng.range(1_000_000, 100_000_000)
    } else if name.contains("bytes") || name.ends_with("size") {
        rng.range(200, 2_000_000)
    } else if name.ends_with("_ms") {
        rng.range(1, 20_000)
    } else if name.ends_with("_time") {
        rng.range(100, 200_000)
    } else {
        rng.range(1, 500)
    }
}

/// A `miss_histogram`: 10–30 distinct millisecond keys spread log-uniformly over 1..60000.
fn histogram(rng: &mut Rng) -> BTreeMap<u32, u64> {
    let mut hist = BTreeMap::new();
    let keys = rng.range(10, 30);
    let max_ln = 60_000f64.ln();
    while (hist.len() as u64) < keys {
        let ms = (rng.unit() * max_ln).exp().round().clamp(1.0, 60_000.0) as u32;
        hist.insert(ms, rng.range(1, 50));
    }
    hist
}

/// One block with about `PRESENT_PCT` % of `fields` present.
fn gen_block(rng: &mut Rng, fields: &'static [(&'static str, Kind)]) -> Block {
    let mut block = Vec::new();
    for &(name, kind) in fields {
        if !rng.chance(PRESENT_PCT) {
            continue;
        }
        let val = match kind {
            Kind::Count => Val::Count(count_value(rng, name)),
            Kind::Float if is_ratio(name) => Val::Float(rng.unit()),
            Kind::Float => Val::Float(rng.unit() * 5.0),
            Kind::Histogram => Val::Hist(histogram(rng)),
        };
        block.push((name, val));
    }
    block
}

/// Fastly's `aggregated` block: per-field sums over datacenters (ratios averaged).
fn aggregate(blocks: &[&Block], fields: &'static [(&'static str, Kind)]) -> Block {
    let mut out = Vec::new();
    for &(name, kind) in fields {
        let vals: Vec<&Val> =
            blocks.iter().filter_map(|b| b.iter().find(|(n, _)| *n == name).map(|(_, v)| v)).collect();
        if vals.is_empty() {
            continue;
        }
        let val = match kind {
            Kind::Count => Val::Count(vals.iter().map(|v| if let Val::Count(c) = v { *c } else { 0 }).sum()),
            Kind::Float => {
                let sum: f64 = vals.iter().map(|v| if let Val::Float(f) = v { *f } else { 0.0 }).sum();
                if is_ratio(name) { Val::Float(sum / vals.len() as f64) } else { Val::Float(sum) }
            }
            Kind::Histogram => {
                let mut merged = BTreeMap::new();
                for v in &vals {
                    if let Val::Hist(h) = v {
                        for (k, c) in h {
                            *merged.entry(*k).or_insert(0) += c;
                        }
                    }
                }
                Val::Hist(merged)
            }
        };
        out.push((name, val));
    }
    out
}

/// Appends `block` as a JSON object. Keys are plain ASCII identifiers: no escaping needed.
fn write_block(out: &mut String, block: &Block) {
    out.push('{');
    for (i, (name, val)) in block.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{name}\":");
        match val {
            Val::Count(c) => {
                let _ = write!(out, "{c}");
            }
            Val::Float(f) => {
                let _ = write!(out, "{f:.6}");
            }
            Val::Hist(h) => {
                out.push('{');
                for (j, (ms, c)) in h.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "\"{ms}\":{c}");
                }
                out.push('}');
            }
        }
    }
    out.push('}');
}

/// Entity names (origins or domains) used inside each datacenter block.
fn entity_names(stream: Stream, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match stream {
            Stream::Domains => format!("domain_{i}.example.com"),
            _ => format!("origin_{i}"),
        })
        .collect()
}

/// Renders one envelope up to (and including) `"recorded":`.
fn render_prefix(stream: Stream, spec: &GenSpec, rng: &mut Rng) -> String {
    let dcs = datacenter_codes(spec.datacenters);
    let mut out = String::from(r#"{"AggregateDelay":0,"Data":[{"datacenter":{"#);
    match stream {
        Stream::Realtime => {
            let blocks: Vec<Block> = dcs.iter().map(|_| gen_block(rng, fields::REALTIME)).collect();
            for (i, (dc, block)) in dcs.iter().zip(&blocks).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "\"{dc}\":");
                write_block(&mut out, block);
            }
            out.push_str(r#"},"aggregated":"#);
            let refs: Vec<&Block> = blocks.iter().collect();
            write_block(&mut out, &aggregate(&refs, fields::REALTIME));
        }
        Stream::Origins | Stream::Domains => {
            let table = if stream == Stream::Origins { fields::ORIGIN } else { fields::DOMAIN };
            let names = entity_names(stream, spec.entities);
            // blocks[dc][entity]
            let blocks: Vec<Vec<Block>> =
                dcs.iter().map(|_| names.iter().map(|_| gen_block(rng, table)).collect()).collect();
            for (i, (dc, per_entity)) in dcs.iter().zip(&blocks).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "\"{dc}\":{{");
                for (j, (name, block)) in names.iter().zip(per_entity).enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "\"{name}\":");
                    write_block(&mut out, block);
                }
                out.push('}');
            }
            out.push_str(r#"},"aggregated":{"#);
            for (j, name) in names.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                let refs: Vec<&Block> = blocks.iter().map(|per| &per[j]).collect();
                let _ = write!(out, "\"{name}\":");
                write_block(&mut out, &aggregate(&refs, table));
            }
            out.push('}');
        }
    }
    out.push_str(r#","recorded":"#);
    out
}

/// Complete sample answers of a generated stream (one per pre-built variant), for benchmarks
/// that measure parsing without a server in the way.
pub fn sample_bodies(stream: Stream, spec: &GenSpec) -> Vec<Vec<u8>> {
    let pool = GenPool::build(stream, spec);
    (0..VARIANTS)
        .map(|i| {
            let (prefix, tail) = pool.body(i, 1_700_000_000 + i);
            let mut body = prefix.to_vec();
            body.extend_from_slice(&tail);
            body
        })
        .collect()
}

/// One complete generated answer with `Timestamp` = `recorded + 1`: for tests that load a
/// large shape once (e.g. 1,500 domains × 15 datacenters) and then hold the stream, so the
/// exporter's table stays fixed while it is scraped.
pub fn generated_body(stream: Stream, spec: &GenSpec, recorded: u64) -> Vec<u8> {
    let mut rng = Rng::new(spec.seed ^ (stream as u64 + 1).wrapping_mul(0x1000_0001));
    let mut body = render_prefix(stream, spec, &mut rng).into_bytes();
    body.extend_from_slice(&tail(recorded, ""));
    body
}

/// The end of an envelope after its prefix: `recorded`, then `Timestamp` (= `recorded + 1`),
/// then `extra` (more top-level members, each starting with a comma), then the closing brace.
pub(super) fn tail(recorded: u64, extra: &str) -> Vec<u8> {
    format!("{recorded}}}],\"Timestamp\":{}{extra}}}", recorded + 1).into_bytes()
}

/// The pre-rendered envelopes of one generated stream.
pub(super) struct GenPool {
    prefixes: Vec<Arc<[u8]>>,
    /// What each envelope adds to the ground truth, read on first use (the benchmark never
    /// asks).
    rows: OnceLock<Vec<Arc<VariantRows>>>,
}

impl GenPool {
    /// Renders `VARIANTS` envelopes for `stream`; deterministic for a given spec.
    pub(super) fn build(stream: Stream, spec: &GenSpec) -> GenPool {
        let mut rng = Rng::new(spec.seed ^ (stream as u64 + 1).wrapping_mul(0x1000_0001));
        let prefixes = (0..VARIANTS).map(|_| Arc::from(render_prefix(stream, spec, &mut rng).into_bytes())).collect();
        GenPool { prefixes, rows: OnceLock::new() }
    }

    /// What envelope `i` adds to the ground truth.
    pub(super) fn variant_rows(&self, i: usize) -> Arc<VariantRows> {
        let rows = self.rows.get_or_init(|| {
            (0..self.prefixes.len())
                .map(|v| {
                    let mut body = self.prefixes[v].to_vec();
                    body.extend_from_slice(&tail(1, ""));
                    Arc::new(VariantRows::parse(&body))
                })
                .collect()
        });
        Arc::clone(&rows[i])
    }

    /// The answer for one service and one second: shared prefix plus a short tail carrying
    /// `recorded` and `Timestamp` (= `recorded + 1`, the next `ts` to poll).
    pub(super) fn body(&self, service_hash: u64, recorded: u64) -> (Arc<[u8]>, Vec<u8>) {
        let prefix = self.prefix(self.variant(service_hash, recorded));
        (prefix, tail(recorded, ""))
    }

    /// Which pre-rendered envelope answers for this service and second.
    pub(super) fn variant(&self, service_hash: u64, recorded: u64) -> usize {
        (service_hash.wrapping_add(recorded) % self.prefixes.len() as u64) as usize
    }

    /// Envelope `i` up to (and including) `"recorded":`.
    pub(super) fn prefix(&self, i: usize) -> Arc<[u8]> {
        Arc::clone(&self.prefixes[i])
    }

    /// Number of pre-rendered envelopes.
    pub(super) fn variants(&self) -> usize {
        self.prefixes.len()
    }

    /// Bytes held by the pool, for sizing reports.
    pub(super) fn heap_bytes(&self) -> usize {
        self.prefixes.iter().map(|p| p.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_is_valid_json() {
        for stream in Stream::ALL {
            let pool = GenPool::build(stream, &GenSpec::default());
            for i in 0..VARIANTS {
                let (prefix, tail) = pool.body(i, 1_700_000_000);
                let mut body = prefix.to_vec();
                body.extend_from_slice(&tail);
                let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
                assert_eq!(v["Timestamp"], 1_700_000_001u64);
                assert_eq!(v["Data"][0]["recorded"], 1_700_000_000u64);
                assert_eq!(v["Data"][0]["datacenter"].as_object().unwrap().len(), 10);
            }
        }
    }

    #[test]
    fn realtime_aggregate_sums_datacenters() {
        let pool = GenPool::build(Stream::Realtime, &GenSpec::default());
        let (prefix, tail) = pool.body(0, 5);
        let mut body = prefix.to_vec();
        body.extend_from_slice(&tail);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let rec = &v["Data"][0];
        let sum: u64 = rec["datacenter"].as_object().unwrap().values().filter_map(|dc| dc["requests"].as_u64()).sum();
        assert_eq!(rec["aggregated"]["requests"].as_u64().unwrap_or(0), sum);
        let present = rec["datacenter"]["AMS"].as_object().unwrap().len();
        // ~60 % of 268 fields, with generous slack for randomness.
        assert!((110..=210).contains(&present), "{present} fields present");
    }

    #[test]
    fn synthetic_codes_beyond_the_pop_list() {
        let codes = datacenter_codes(POPS.len() + 2);
        assert_eq!(codes[POPS.len()], "ZAA");
        assert_eq!(codes[POPS.len() + 1], "ZAB");
        let v: serde_json::Value = serde_json::from_slice(&datacenters_json(60)).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 60);
        let groups = |v: &serde_json::Value| {
            let mut g: Vec<String> =
                v.as_array().unwrap().iter().map(|d| d["group"].as_str().unwrap().into()).collect();
            g.sort();
            g.dedup();
            g
        };
        assert_eq!(v[0]["group"], "Europe", "real POPs keep their group");
        assert_eq!(groups(&v).len(), 6, "synthetic POPs are spread over the groups");
        let five: serde_json::Value = serde_json::from_slice(&datacenters_json_in(60, &GROUPS[..5])).unwrap();
        assert_eq!(groups(&five).len(), 5);
        assert_eq!(five[5]["group"], GROUPS[0]);
    }
}
