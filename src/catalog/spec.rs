//! Parsing `families.tsv` into the structures that drive ingest and render.

use std::fmt;

use super::ids::{AccountFamily, ExporterFamily, ServiceFamily};

/// One of the three rt.fastly.com streams. Each has its own JSON field set and row layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// `/v1/channel/{id}/ts/{ts}`: the real-time stats, one row per datacenter.
    Realtime = 0,
    /// `/v1/origins/{id}/ts/{ts}`: Origin Inspector, one row per (datacenter, origin).
    Origin = 1,
    /// `/v1/domains/{id}/ts/{ts}`: Domain Inspector, one row per (datacenter, domain).
    Domain = 2,
}

impl Stream {
    /// All streams, in row-table order.
    pub const ALL: [Stream; 3] = [Stream::Realtime, Stream::Origin, Stream::Domain];

    /// Position in per-service arrays of stream tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The subsystem the Go exporter uses for this stream's family names: the configured
    /// `-subsystem` for real-time stats, fixed `origin` / `domain` for the inspectors.
    pub fn subsystem(self, configured: &str) -> &str {
        match self {
            Stream::Realtime => configured,
            Stream::Origin => "origin",
            Stream::Domain => "domain",
        }
    }

    /// The label naming the second row key (origin or domain), if the stream has one.
    pub fn entity_label(self) -> Option<&'static str> {
        match self {
            Stream::Realtime => None,
            Stream::Origin => Some("origin"),
            Stream::Domain => Some("domain"),
        }
    }

    /// The path segment of the stream on rt.fastly.com.
    pub fn path(self) -> &'static str {
        match self {
            Stream::Realtime => "channel",
            Stream::Origin => "origins",
            Stream::Domain => "domains",
        }
    }

    /// Short name for logs, metrics and the catalog's scope column.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Realtime => "rt",
            Stream::Origin => "origin",
            Stream::Domain => "domain",
        }
    }
}

/// Where a family's values come from, and for families that are not stream rows, which one
/// it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Rows of one stream, per (service, datacenter[, origin|domain]).
    Stream(Stream),
    /// Per-service values that are not stream rows (`service_info`, poll outcomes).
    Service(ServiceFamily),
    /// Account-wide metadata (datacenters, token, certificates, dictionaries, build).
    Account(AccountFamily),
    /// The exporter's own health.
    Exporter(ExporterFamily),
}

/// Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic; we only ever add to it.
    Counter,
    /// Set, not added.
    Gauge,
    /// Bucket counts plus a sum; `_count` is derived from the buckets.
    Histogram,
}

impl Kind {
    /// The word used on `# TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// How one series is computed from a record, as written in the catalog.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// Sum of fields, each multiplied by `scale` (1 or 1/1000).
    Sum { fields: Vec<&'static str>, scale: f64 },
    /// `plus - sum(minus)` per record, floored at 0.
    GuardedDiff { plus: &'static str, minus: Vec<&'static str> },
    /// An object of `"<key>": count` observed at `key * scale`.
    Map { field: &'static str, scale: f64 },
    /// Each field's count observed at a fixed value.
    Observe(Vec<(&'static str, f64)>),
    /// A gauge set from `field` per record; when datacenters share a row (grouping), the
    /// records' values are averaged weighted by the sum of the `weight` fields (unweighted
    /// when none is named).
    Gauge { field: &'static str, weight: Vec<&'static str> },
    /// Not fed from a stream (service and account scopes).
    External,
}

/// One series of a family: its fixed extra label values and where its slots start.
#[derive(Clone, Debug)]
pub struct Series {
    /// Fixed label pairs beyond the row's own labels, in the family's label order.
    pub labels: Vec<(&'static str, &'static str)>,
    /// First slot in the row; a histogram uses `buckets.len() + 1` bucket slots then the sum.
    pub slot: usize,
    /// The expression feeding this series.
    pub source: Source,
}

/// One metric family.
#[derive(Clone, Debug)]
pub struct Family {
    /// Which table or metadata source feeds it.
    pub scope: Scope,
    /// Name without namespace and subsystem, e.g. `requests_total`.
    pub name: &'static str,
    /// Metric type.
    pub kind: Kind,
    /// For stream scopes: the fixed extra labels (e.g. `status_code`); for other scopes: all
    /// labels, in the order the Go exporter declares them.
    pub labels: Vec<&'static str>,
    /// Upper bounds of a histogram's buckets, without `+Inf`.
    pub buckets: Vec<f64>,
    /// The series per row (stream scopes) or a single placeholder (other scopes).
    pub series: Vec<Series>,
    /// The exact help text of the Go exporter, so `# HELP` lines match.
    pub help: &'static str,
}

impl Family {
    /// Slots a single series of this family occupies in a row.
    pub fn slots_per_series(&self) -> usize {
        match self.kind {
            Kind::Histogram => self.buckets.len() + 2,
            _ => 1,
        }
    }
}

/// What to do with one JSON field's value when a record is merged into a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// `row[slot] += value * scale`.
    Add { slot: usize, scale: f64 },
    /// A fixed-value histogram observation repeated `value` times.
    Observe { bucket: usize, sum: usize, at: f64 },
    /// A map field: each entry lands in the bucket of `key * scale`.
    ObserveMap { first: usize, sum: usize, scale: f64, bounds: Vec<f64> },
}

/// Per-record operations that need more than one field or must run even when a field is
/// absent (a gauge is set to 0 when a record omits it, as the Go exporter does).
#[derive(Clone, Debug, PartialEq)]
pub enum RecordOp {
    /// `row[slot] = record[field]`; under grouping, the mean over the row's records weighted
    /// by the sum of the `weight` fields.
    Set { slot: usize, field: u16, weight: Vec<u16> },
    /// `row[slot] += max(record[plus] - sum(record[minus]), 0)`.
    GuardedDiff { slot: usize, plus: u16, minus: Vec<u16> },
}

/// Whether a JSON field is a number or an object of counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// A JSON number (integer or float).
    Number,
    /// An object `{"<number>": count}` (the miss-latency histogram).
    Map,
}

/// Everything ingest needs for one stream: which JSON keys to read and what each one feeds.
#[derive(Clone, Debug, Default)]
pub struct StreamDef {
    /// JSON keys that feed at least one family, indexed by field number.
    pub fields: Vec<&'static str>,
    /// Kind of each field.
    pub field_kinds: Vec<FieldKind>,
    /// What each field feeds.
    pub targets: Vec<Vec<Target>>,
    /// For each field, the one slot it adds to unscaled when that is all it feeds (most
    /// counters: `row[slot] += value`), or [`NOT_DIRECT`]: the merge then goes through
    /// `targets`. Derived from `targets` by [`StreamDef::wire_direct`]; a field beyond its end
    /// is not direct.
    pub direct: Vec<u32>,
    /// Operations run once per record.
    pub record_ops: Vec<RecordOp>,
    /// Length of a row's value array.
    pub slots: usize,
    /// Whether each field is a count (`u64` in the API's field list): a fractional value there
    /// is corrupt and skipped. Fields of unknown type accept any non-negative number.
    pub integral: Vec<bool>,
    index: FieldIndex,
}

/// In [`StreamDef::direct`]: the field's targets are read one by one.
pub const NOT_DIRECT: u32 = u32::MAX;

impl StreamDef {
    /// Derives [`StreamDef::direct`] from the targets (after the last one is wired).
    pub fn wire_direct(&mut self) {
        self.direct = (self.targets.iter().zip(&self.field_kinds))
            .map(|(targets, kind)| match (kind, targets.as_slice()) {
                (FieldKind::Number, [Target::Add { slot, scale }]) if *scale == 1.0 => {
                    u32::try_from(*slot).unwrap_or(NOT_DIRECT)
                }
                _ => NOT_DIRECT,
            })
            .collect();
    }

    /// Field number of a JSON key, or `None` for keys no family reads (skipped by the parser).
    pub fn field(&self, key: &str) -> Option<u16> {
        self.field_bytes(key.as_bytes())
    }

    /// Like [`StreamDef::field`] for a raw key: the parser skips UTF-8 validation of keys,
    /// which only ever match ASCII catalog names.
    #[inline]
    pub fn field_bytes(&self, key: &[u8]) -> Option<u16> {
        self.index.get(key)
    }

    fn intern_field(&mut self, name: &'static str, kind: FieldKind) -> Result<u16, String> {
        if let Some(i) = self.index.get(name.as_bytes()) {
            if self.field_kinds[i as usize] != kind {
                return Err(format!("field {name} used both as number and map"));
            }
            return Ok(i);
        }
        let i = u16::try_from(self.fields.len()).map_err(|_| "too many fields".to_string())?;
        self.fields.push(name);
        self.field_kinds.push(kind);
        self.targets.push(Vec::new());
        self.index.rebuild(&self.fields);
        Ok(i)
    }
}

/// Open-addressing lookup of JSON keys to field numbers.
///
/// Looked up for every key of every datacenter block (about two million times a second at a
/// thousand services). Each slot is eight bytes, the upper half of the key's 64-bit hash and
/// its field number, so the table of a stream (1,024 slots) stays in the first-level cache
/// next to the body being parsed; a probe compares one integer and touches the key bytes
/// only to confirm a match. A general-purpose `HashMap` cost ~10% of ingest, and slots
/// holding the hash and a slice (32 bytes each, a 64 KB table) missed the cache on most keys.
#[derive(Clone, Debug, Default)]
pub struct FieldIndex {
    /// `(hash >> 32, field)`; `field == u16::MAX` marks an empty slot.
    slots: Vec<(u32, u16)>,
    /// The keys, by field number.
    keys: Vec<&'static [u8]>,
    mask: usize,
}

/// `a == b` in eight-byte words, inline: the slice comparison is a call to the C library's
/// `bcmp`, a byte loop in musl (the static binary).
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return short_word(a) == short_word(b);
    }
    let mut i = 0;
    while i + 8 <= n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

impl FieldIndex {
    /// Mixes the length with the first and last eight bytes: two loads, no loop. Keys that
    /// agree on all three share a hash and are told apart by the byte comparison.
    #[inline]
    fn hash(key: &[u8]) -> u64 {
        let n = key.len();
        let (head, tail) = if n >= 8 { (word(key, 0), word(key, n - 8)) } else { (short_word(key), 0) };
        let h = (head ^ tail.rotate_left(23) ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 31)
    }

    fn rebuild(&mut self, keys: &[&'static str]) {
        let cap = (keys.len() * 3).next_power_of_two().max(16);
        self.slots = vec![(0, u16::MAX); cap];
        self.keys = keys.iter().map(|k| k.as_bytes()).collect();
        self.mask = cap - 1;
        for (i, k) in keys.iter().enumerate() {
            let h = Self::hash(k.as_bytes());
            let mut pos = h as usize & self.mask;
            while self.slots[pos].1 != u16::MAX {
                pos = (pos + 1) & self.mask;
            }
            self.slots[pos] = ((h >> 32) as u32, i as u16);
        }
    }

    /// The field number of `key`, if the catalog reads it.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<u16> {
        if self.slots.is_empty() {
            return None;
        }
        let h = Self::hash(key);
        let (high, mut pos) = ((h >> 32) as u32, h as usize & self.mask);
        loop {
            let (sh, i) = self.slots[pos];
            if i == u16::MAX {
                return None;
            }
            if sh == high && same_bytes(self.keys[usize::from(i)], key) {
                return Some(i);
            }
            pos = (pos + 1) & self.mask;
        }
    }
}

/// The eight bytes of `b` at `at` (which must leave eight), little-endian.
#[inline]
fn word(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).and_then(|w| w.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// A slice shorter than eight bytes as one little-endian word.
#[inline]
fn short_word(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |w, &byte| (w << 8) | u64::from(byte))
}

/// The parsed catalog.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// Every family, in file order.
    pub families: Vec<Family>,
    /// Ingest plans, indexed by `Stream::index()`.
    pub streams: [StreamDef; 3],
}

impl Catalog {
    /// The ingest plan of one stream.
    pub fn stream(&self, s: Stream) -> &StreamDef {
        &self.streams[s.index()]
    }

    /// Looks a family up by its short name within a scope.
    pub fn family(&self, scope: Scope, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.scope == scope && f.name == name)
    }

    /// The family of a typed scope (`Scope::Service(..)`, `Scope::Account(..)`,
    /// `Scope::Exporter(..)`); every identifier has exactly one (checked when parsing).
    pub fn get(&self, scope: Scope) -> &Family {
        self.families
            .iter()
            .find(|f| f.scope == scope)
            .unwrap_or_else(|| unreachable!("parse_catalog checks every identifier has a family"))
    }
}

/// The catalog names no line declares, for the completeness check.
fn missing_ids(families: &[Family]) -> Vec<&'static str> {
    let declared = |scope: Scope| families.iter().any(|f| f.scope == scope);
    let services = ServiceFamily::ALL.iter().map(|id| (Scope::Service(*id), id.name()));
    let accounts = AccountFamily::ALL.iter().map(|id| (Scope::Account(*id), id.name()));
    let exporter = ExporterFamily::ALL.iter().map(|id| (Scope::Exporter(*id), id.name()));
    services.chain(accounts).chain(exporter).filter(|(s, _)| !declared(*s)).map(|(_, n)| n).collect()
}

/// A catalog line that does not parse, with its line number.
#[derive(Debug)]
pub struct CatalogError {
    line: usize,
    msg: String,
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

impl std::error::Error for CatalogError {}

/// The JSON field types of one stream, from the API's field list (`name<TAB>type[<TAB>note]`,
/// types `u64`, `f64`, `map`…), so the parser can tell a corrupt value from a real one.
pub fn apply_field_types(def: &mut StreamDef, list: &str) {
    def.integral = def.fields.iter().map(|f| list.lines().any(|l| l.split('\t').take(2).eq([*f, "u64"]))).collect();
}

/// Parses the catalog text (tab-separated: scope, name, type, labels, source, buckets, help).
pub fn parse_catalog(text: &'static str) -> Result<Catalog, CatalogError> {
    let mut families = Vec::new();
    let mut streams: [StreamDef; 3] = Default::default();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fam = parse_family(line, &mut streams).map_err(|msg| CatalogError { line: lineno, msg })?;
        if !matches!(fam.scope, Scope::Stream(_)) && families.iter().any(|f: &Family| f.scope == fam.scope) {
            return Err(CatalogError { line: lineno, msg: format!("{} is declared twice", fam.name) });
        }
        families.push(fam);
    }
    let missing = missing_ids(&families);
    if !missing.is_empty() {
        let line = text.lines().count();
        return Err(CatalogError { line, msg: format!("no line declares {}", missing.join(", ")) });
    }
    for def in &mut streams {
        def.wire_direct();
    }
    Ok(Catalog { families, streams })
}

fn parse_family(line: &'static str, streams: &mut [StreamDef; 3]) -> Result<Family, String> {
    let cols: Vec<&'static str> = line.split('\t').collect();
    if cols.len() != 7 {
        return Err(format!("want 7 tab-separated columns, got {}", cols.len()));
    }
    let name = cols[1];
    let unknown = || format!("{name} has no identifier in src/catalog/ids.rs for scope {}", cols[0]);
    let scope = match cols[0] {
        "rt" => Scope::Stream(Stream::Realtime),
        "origin" => Scope::Stream(Stream::Origin),
        "domain" => Scope::Stream(Stream::Domain),
        "service" => Scope::Service(ServiceFamily::from_name(name).ok_or_else(unknown)?),
        "account" => Scope::Account(AccountFamily::from_name(name).ok_or_else(unknown)?),
        "exporter" => Scope::Exporter(ExporterFamily::from_name(name).ok_or_else(unknown)?),
        other => return Err(format!("unknown scope {other:?}")),
    };
    let kind = match cols[2] {
        "counter" => Kind::Counter,
        "gauge" => Kind::Gauge,
        "histogram" => Kind::Histogram,
        other => return Err(format!("unknown type {other:?}")),
    };
    let labels: Vec<&'static str> = split_nonempty(cols[3], ',');
    let buckets = split_nonempty(cols[5], ',')
        .into_iter()
        .map(|b| b.parse::<f64>().map_err(|_| format!("bad bucket bound {b:?}")))
        .collect::<Result<Vec<f64>, String>>()?;
    if buckets.windows(2).any(|w| w[0] >= w[1]) {
        return Err("bucket bounds must increase".into());
    }
    if (kind == Kind::Histogram) == buckets.is_empty() {
        return Err("buckets are required for histograms and only for them".into());
    }
    let mut family = Family { scope, name, kind, labels, buckets, series: Vec::new(), help: cols[6] };
    let Scope::Stream(stream) = scope else {
        if cols[4] != "-" {
            return Err("service, account and exporter families take source '-'".into());
        }
        family.series.push(Series { labels: Vec::new(), slot: 0, source: Source::External });
        return Ok(family);
    };
    let def = &mut streams[stream.index()];
    for part in cols[4].split(';') {
        let (label_text, expr) = split_labels(part);
        let pairs = parse_pairs(label_text)?;
        let names: Vec<&str> = pairs.iter().map(|p| p.0).collect();
        if names != family.labels {
            return Err(format!("series labels {names:?} differ from declared {:?}", family.labels));
        }
        let source = match parse_source(expr)? {
            // A gauge names one field: the unweighted form of `field~weights`.
            Source::Sum { fields, scale } if kind == Kind::Gauge && fields.len() == 1 && scale == 1.0 => {
                Source::Gauge { field: fields[0], weight: Vec::new() }
            }
            other => other,
        };
        let slot = def.slots;
        def.slots += family.slots_per_series();
        wire_series(def, &family, &source, slot)?;
        family.series.push(Series { labels: pairs, slot, source });
    }
    if family.series.is_empty() {
        return Err("no series".into());
    }
    Ok(family)
}

fn split_nonempty(s: &'static str, sep: char) -> Vec<&'static str> {
    s.split(sep).map(str::trim).filter(|p| !p.is_empty()).collect()
}

/// Splits `label=value,…:expr` into its label part and expression; a part without labels is
/// all expression. Expressions never contain `:` or `=`, so the first `:` after a `=` decides.
fn split_labels(part: &'static str) -> (&'static str, &'static str) {
    match part.find(':') {
        Some(i) if part[..i].contains('=') => (&part[..i], &part[i + 1..]),
        _ => ("", part),
    }
}

fn parse_pairs(text: &'static str) -> Result<Vec<(&'static str, &'static str)>, String> {
    split_nonempty(text, ',')
        .into_iter()
        .map(|kv| kv.split_once('=').ok_or_else(|| format!("bad label pair {kv:?}")))
        .collect()
}

fn parse_source(expr: &'static str) -> Result<Source, String> {
    let expr = expr.trim();
    if let Some(inner) = expr.strip_prefix("map(").and_then(|s| s.strip_suffix(')')) {
        let (field, scale) = inner.split_once(',').ok_or("map(field,scale) needs a scale")?;
        let scale = scale.trim().parse::<f64>().map_err(|_| format!("bad scale in {expr:?}"))?;
        return Ok(Source::Map { field: field.trim(), scale });
    }
    if let Some(inner) = expr.strip_prefix("obs(").and_then(|s| s.strip_suffix(')')) {
        let mut obs = Vec::new();
        for item in split_nonempty(inner, ',') {
            let (field, at) = item.split_once('@').ok_or_else(|| format!("bad observation {item:?}"))?;
            let at = at.parse::<f64>().map_err(|_| format!("bad observation value {item:?}"))?;
            obs.push((field, at));
        }
        return Ok(Source::Observe(obs));
    }
    if let Some((field, weight)) = expr.split_once('~') {
        let weight = split_nonempty(weight, '+');
        if !is_field_name(field) || weight.is_empty() || weight.iter().any(|w| !is_field_name(w)) {
            return Err(format!("bad weighted gauge {expr:?}"));
        }
        return Ok(Source::Gauge { field, weight });
    }
    if expr.contains('-') {
        let mut parts = split_nonempty(expr, '-').into_iter();
        let plus = parts.next().ok_or("empty difference")?;
        return Ok(Source::GuardedDiff { plus, minus: parts.collect() });
    }
    let (fields, scale) = match expr.split_once('/') {
        Some((f, div)) => {
            let div = div.parse::<f64>().map_err(|_| format!("bad divisor in {expr:?}"))?;
            (f, 1.0 / div)
        }
        None => (expr, 1.0),
    };
    let fields = split_nonempty(fields, '+');
    if fields.is_empty() || fields.iter().any(|f| !is_field_name(f)) {
        return Err(format!("bad source expression {expr:?}"));
    }
    Ok(Source::Sum { fields, scale })
}

fn is_field_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Registers what each field of `source` feeds, starting at `slot`.
fn wire_series(def: &mut StreamDef, fam: &Family, source: &Source, slot: usize) -> Result<(), String> {
    let nb = fam.buckets.len();
    match (fam.kind, source) {
        (Kind::Counter, Source::Sum { fields, scale }) => {
            for f in fields {
                let i = def.intern_field(f, FieldKind::Number)?;
                def.targets[i as usize].push(Target::Add { slot, scale: *scale });
            }
        }
        (Kind::Counter, Source::GuardedDiff { plus, minus }) => {
            let plus = def.intern_field(plus, FieldKind::Number)?;
            let minus =
                minus.iter().map(|m| def.intern_field(m, FieldKind::Number)).collect::<Result<Vec<u16>, String>>()?;
            def.record_ops.push(RecordOp::GuardedDiff { slot, plus, minus });
        }
        (Kind::Gauge, Source::Gauge { field, weight }) => {
            let field = def.intern_field(field, FieldKind::Number)?;
            let weight =
                weight.iter().map(|w| def.intern_field(w, FieldKind::Number)).collect::<Result<Vec<u16>, String>>()?;
            def.record_ops.push(RecordOp::Set { slot, field, weight });
        }
        (Kind::Histogram, Source::Map { field, scale }) => {
            let i = def.intern_field(field, FieldKind::Map)?;
            let target =
                Target::ObserveMap { first: slot, sum: slot + nb + 1, scale: *scale, bounds: fam.buckets.clone() };
            def.targets[i as usize].push(target);
        }
        (Kind::Histogram, Source::Observe(obs)) => {
            for (f, at) in obs {
                let i = def.intern_field(f, FieldKind::Number)?;
                let bucket = slot + bucket_index(&fam.buckets, *at);
                def.targets[i as usize].push(Target::Observe { bucket, sum: slot + nb + 1, at: *at });
            }
        }
        (kind, source) => return Err(format!("{source:?} cannot feed a {}", kind.as_str())),
    }
    Ok(())
}

/// Index of the bucket an observation lands in: the first bound `>= v` (Prometheus' `le`),
/// or `bounds.len()` for `+Inf`.
pub fn bucket_index(bounds: &[f64], v: f64) -> usize {
    bounds.partition_point(|&b| b < v)
}

#[cfg(test)]
mod tests {
    use super::FieldIndex;

    #[test]
    fn every_key_is_found_and_near_misses_are_not() {
        // Lengths 1..40, shared prefixes and suffixes, and keys equal in their first and last
        // eight bytes (the hash's input) but not in the middle.
        let mut keys: Vec<&'static str> = vec!["a", "ab", "abc", "requests", "requestsX", "miss_histogram"];
        for n in 1..=40 {
            keys.push(Box::leak("k".repeat(n).into_boxed_str()));
        }
        keys.push("aaaaaaaa_middle_one_zzzzzzzz");
        keys.push("aaaaaaaa_middle_two_zzzzzzzz");
        let mut index = FieldIndex::default();
        index.rebuild(&keys);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(index.get(k.as_bytes()), Some(i as u16), "{k}");
        }
        for miss in ["", "b", "abd", "request", "requestsY", "aaaaaaaa_middle_six_zzzzzzzz", &"k".repeat(41)] {
            assert_eq!(index.get(miss.as_bytes()), None, "{miss}");
        }
    }
}
