//! The state file's format (`-state-file`): each stream's position (`next_ts`) and every value
//! of its rows, so a restarted exporter resumes each stream where it stopped and no second is
//! lost or counted twice.
//!
//! This module only turns tables into bytes and bytes into restorable rows; opening, writing
//! atomically and setting bad files aside is `app/state.rs`'s job (the store does no I/O).
//!
//! # Format, version 1
//!
//! ```text
//! "FXSTATE\0"            8 bytes, magic
//! version                u32 little-endian (1)
//! gzip member            the body below; its CRC-32 and length catch truncation and damage
//! ```
//!
//! Body (integers are LEB128 varints, strings a varint length then UTF-8):
//!
//! ```text
//! namespace, subsystem, rows    whose state this is (rows: "datacenter", "group" or "aggregate")
//! written_at                    unix seconds
//! 3 × slot layout               per stream (real-time, origins, domains): slot count, then one
//!                               key per slot ("requests_total", "status_code_total{status_code=200}",
//!                               "miss_duration_seconds#[0.005,…]#3": histogram part 3)
//! entries                       tag 1, service id, stream (0..2), next_ts, row count, then per
//!                               row: datacenter, entity ("" for real-time), last-seen second,
//!                               one value per slot of the layout
//! end                           tag 0
//! ```
//!
//! A value that is a whole number in `0..2^53` is the varint `2n` (one byte for 0, which most
//! are); any other is `1` followed by its 8 IEEE-754 bytes, so every value comes back bit for
//! bit. Slots are matched by key, not position: an exporter whose catalog gained or reordered
//! families restores what it still has, starts new series at 0 and drops series it no longer
//! exports (a histogram whose buckets changed starts again whole).

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::{Arc, OnceLock};

use flate2::Compression;
use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;

use crate::catalog::{Kind, Scope, Stream, catalog};

use super::registry::Service;

/// First bytes of every state file.
pub const MAGIC: &[u8; 8] = b"FXSTATE\0";

/// The body layout this build writes and reads.
pub const VERSION: u32 = 1;

/// Most values a file may restore (8 bytes each once restored): far beyond any account
/// (Scale A is 2.9 M), small enough that a damaged file cannot exhaust memory before its
/// checksum is reached.
const MAX_VALUES: u64 = 64 << 20;

/// Longest string (service ID, datacenter, origin or domain name, slot key) read back.
const MAX_STRING: u64 = 64 << 10;

/// Most slots a stream's layout may have (the catalog has a few hundred).
const MAX_SLOTS: u64 = 1 << 16;

/// Whose state a file holds. A file written under another identity is foreign: its series
/// would carry other names or other rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `-namespace`.
    pub namespace: String,
    /// `-subsystem`.
    pub subsystem: String,
    /// What a row is: `datacenter` (one per POP) or `aggregate` (`-aggregate-only`).
    pub rows: String,
}

/// One row read back, its values already in this build's slot layout.
#[derive(Clone, Debug, PartialEq)]
pub struct RestoredRow {
    /// Datacenter (or `aggregate`).
    pub dc: String,
    /// Origin or domain; empty for the real-time stream.
    pub entity: String,
    /// Unix second of the last record for this row (origin and domain expiry).
    pub seen: u32,
    /// Values by slot.
    pub values: Box<[f64]>,
}

/// One stream of one service read back.
#[derive(Clone, Debug, PartialEq)]
pub struct RestoredStream {
    /// The `ts` to poll next: every second before it is in `rows`.
    pub next_ts: u64,
    /// Its rows.
    pub rows: Vec<RestoredRow>,
}

/// A whole file read back.
#[derive(Debug, Default)]
pub struct Restored {
    /// When it was written (unix seconds).
    pub written_at: u64,
    /// By (service ID, stream).
    pub streams: HashMap<(String, Stream), RestoredStream>,
    /// Slots of the file no series of this build matches (a family was removed).
    pub dropped_slots: usize,
}

/// Why a file cannot be restored.
#[derive(Debug)]
pub enum SnapshotError {
    /// Reading failed.
    Io(io::Error),
    /// The file ends early (a write that never finished, a full disk).
    Truncated,
    /// The bytes are damaged or not what this format writes.
    Corrupt(String),
    /// A state file, but not for this exporter: another format version, namespace or rows.
    Foreign(String),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Io(e) => write!(f, "cannot read it: {e}"),
            SnapshotError::Truncated => f.write_str("it is truncated"),
            SnapshotError::Corrupt(why) => write!(f, "it is corrupt: {why}"),
            SnapshotError::Foreign(why) => write!(f, "it is not this exporter's: {why}"),
        }
    }
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SnapshotError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// The key of every slot of a stream's rows, in slot order (see the module docs).
pub fn slot_keys(stream: Stream) -> &'static [String] {
    static KEYS: OnceLock<[Vec<String>; 3]> = OnceLock::new();
    &KEYS.get_or_init(|| Stream::ALL.map(build_slot_keys))[stream.index()]
}

fn build_slot_keys(stream: Stream) -> Vec<String> {
    let c = catalog();
    let mut keys: Vec<String> = (0..c.stream(stream).slots).map(|i| format!("#unassigned{i}")).collect();
    for fam in c.families.iter().filter(|f| f.scope == Scope::Stream(stream)) {
        for s in &fam.series {
            let mut base = fam.name.to_string();
            if !s.labels.is_empty() {
                let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                base = format!("{base}{{{}}}", labels.join(","));
            }
            match fam.kind {
                Kind::Histogram => {
                    let bounds: Vec<String> = fam.buckets.iter().map(|b| b.to_string()).collect();
                    for part in 0..fam.slots_per_series() {
                        keys[s.slot + part] = format!("{base}#[{}]#{part}", bounds.join(","));
                    }
                }
                Kind::Counter | Kind::Gauge => keys[s.slot] = base,
            }
        }
    }
    keys
}

/// Writes a state file: [`SnapshotWriter::new`], then every table and not yet applied restored
/// stream, then [`SnapshotWriter::finish`].
pub struct SnapshotWriter<W: Write> {
    gz: GzEncoder<W>,
    buf: Vec<u8>,
    copy: TableCopy,
    /// Streams written so far.
    pub streams: usize,
}

/// One table copied out under its read lock, to be encoded after the lock is released.
#[derive(Default)]
struct TableCopy {
    rows: Vec<(Arc<str>, Arc<str>, u32)>,
    values: Vec<f64>,
}

impl<W: Write> SnapshotWriter<W> {
    /// Writes the header, the identity and the slot layouts to `out`.
    pub fn new(mut out: W, id: &Identity, written_at: u64) -> io::Result<SnapshotWriter<W>> {
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        // Level 1: most of the body is small varints and repeated names; higher levels cost
        // several times the CPU for a few percent.
        let mut w = SnapshotWriter {
            gz: GzEncoder::new(out, Compression::fast()),
            buf: Vec::with_capacity(64 << 10),
            copy: TableCopy::default(),
            streams: 0,
        };
        for s in [&id.namespace, &id.subsystem, &id.rows] {
            put_str(&mut w.buf, s);
        }
        put_varint(&mut w.buf, written_at);
        for stream in Stream::ALL {
            let keys = slot_keys(stream);
            put_varint(&mut w.buf, keys.len() as u64);
            for k in keys {
                put_str(&mut w.buf, k);
            }
        }
        w.flush_buf()?;
        Ok(w)
    }

    /// Writes every stream of `svc` that has a position. Each table's read lock is held only
    /// to copy its rows (a memcpy of its values), never while encoding or writing, so neither
    /// a poller nor a scrape waits on the file.
    pub fn service(&mut self, svc: &Service) -> io::Result<()> {
        for stream in Stream::ALL {
            let next_ts = {
                let table = svc.table(stream);
                if table.next_ts() == 0 {
                    continue;
                }
                self.copy.rows.clear();
                self.copy.values.clear();
                for r in table.rows() {
                    self.copy.rows.push((r.dc.clone(), r.entity.clone(), r.seen));
                    self.copy.values.extend_from_slice(&r.values);
                }
                table.next_ts()
            };
            let slots = slot_keys(stream).len();
            self.entry_head(&svc.id, stream, next_ts, self.copy.rows.len());
            let TableCopy { rows, values } = &self.copy;
            for (i, (dc, entity, seen)) in rows.iter().enumerate() {
                put_row(&mut self.buf, dc, entity, *seen, &values[i * slots..(i + 1) * slots]);
                if self.buf.len() >= 64 << 10 {
                    self.gz.write_all(&self.buf)?;
                    self.buf.clear();
                }
            }
            self.flush_buf()?;
        }
        Ok(())
    }

    /// Writes a stream restored earlier but not applied yet (its service not selected yet,
    /// or its product's entitlement not known yet), so a restart before then loses nothing.
    pub fn restored(&mut self, service_id: &str, stream: Stream, r: &RestoredStream) -> io::Result<()> {
        self.entry_head(service_id, stream, r.next_ts, r.rows.len());
        for row in &r.rows {
            put_row(&mut self.buf, &row.dc, &row.entity, row.seen, &row.values);
            if self.buf.len() >= 64 << 10 {
                self.flush_buf()?;
            }
        }
        self.flush_buf()
    }

    /// Ends the body and the gzip member; returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        put_varint(&mut self.buf, 0);
        self.flush_buf()?;
        self.gz.finish()
    }

    fn entry_head(&mut self, service_id: &str, stream: Stream, next_ts: u64, rows: usize) {
        self.streams += 1;
        put_varint(&mut self.buf, 1);
        put_str(&mut self.buf, service_id);
        put_varint(&mut self.buf, stream.index() as u64);
        put_varint(&mut self.buf, next_ts);
        put_varint(&mut self.buf, rows as u64);
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.gz.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

fn put_row(buf: &mut Vec<u8>, dc: &str, entity: &str, seen: u32, values: &[f64]) {
    put_str(buf, dc);
    put_str(buf, entity);
    put_varint(buf, u64::from(seen));
    for v in values {
        put_value(buf, *v);
    }
}

fn put_varint(buf: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_varint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// 2^53: whole numbers below it are exact in an `f64`.
const EXACT: f64 = 9_007_199_254_740_992.0;

fn put_value(buf: &mut Vec<u8>, v: f64) {
    // `-0.0` passes the range test but must keep its sign: compare bits.
    if (0.0..EXACT).contains(&v) && v.fract() == 0.0 && v.to_bits() != (-0.0f64).to_bits() {
        put_varint(buf, (v as u64) << 1);
    } else {
        buf.push(1);
        buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

/// Reads a state file written under `expect`. Nothing is returned unless the whole file,
/// checksum included, is sound.
pub fn read<R: Read>(mut input: R, expect: &Identity) -> Result<Restored, SnapshotError> {
    let mut head = [0u8; 12];
    let got = read_full(&mut input, &mut head).map_err(SnapshotError::Io)?;
    if got < MAGIC.len() {
        if got == 0 {
            return Err(SnapshotError::Truncated);
        }
        return Err(if head[..got] == MAGIC[..got] { SnapshotError::Truncated } else { not_ours() });
    }
    if &head[..8] != MAGIC {
        return Err(not_ours());
    }
    if got < head.len() {
        return Err(SnapshotError::Truncated);
    }
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if version != VERSION {
        return Err(SnapshotError::Foreign(format!("format version {version}; this exporter reads version {VERSION}")));
    }
    let mut r = Body { gz: GzDecoder::new(BufReader::new(input)), buf: vec![0; 64 << 10], pos: 0, len: 0 };
    let found = Identity { namespace: r.string()?, subsystem: r.string()?, rows: r.string()? };
    check_identity(&found, expect)?;
    let written_at = r.varint()?;
    let mut layouts: Vec<(usize, Vec<Option<usize>>)> = Vec::with_capacity(3);
    let mut dropped_slots = 0;
    for stream in Stream::ALL {
        let ours: HashMap<&str, usize> = slot_keys(stream).iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
        let n = r.varint()?;
        if n > MAX_SLOTS {
            return Err(corrupt(format!("{n} slots per row")));
        }
        let mut map = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let key = r.string()?;
            let slot = ours.get(key.as_str()).copied();
            dropped_slots += usize::from(slot.is_none());
            map.push(slot);
        }
        layouts.push((slot_keys(stream).len(), map));
    }
    let mut streams = HashMap::new();
    let mut values_left = MAX_VALUES;
    loop {
        match r.varint()? {
            0 => break,
            1 => {}
            tag => return Err(corrupt(format!("unknown entry tag {tag}"))),
        }
        let service = r.string()?;
        let stream = match r.varint()? {
            0 => Stream::Realtime,
            1 => Stream::Origin,
            2 => Stream::Domain,
            s => return Err(corrupt(format!("unknown stream {s}"))),
        };
        let next_ts = r.varint()?;
        let nrows = r.varint()?;
        let (slots, map) = &layouts[stream.index()];
        let cost = nrows.saturating_mul(map.len().max(1) as u64);
        if cost > values_left {
            return Err(corrupt("more values than any account has".to_string()));
        }
        values_left -= cost;
        let mut rows = Vec::with_capacity(nrows.min(4096) as usize);
        for _ in 0..nrows {
            let dc = r.string()?;
            let entity = r.string()?;
            let seen = u32::try_from(r.varint()?).map_err(|_| corrupt("a last-seen second past 2106".into()))?;
            let mut values = vec![0.0; *slots].into_boxed_slice();
            for to in map {
                let v = r.value()?;
                if let Some(i) = to {
                    values[*i] = v;
                }
            }
            rows.push(RestoredRow { dc, entity, seen, values });
        }
        // A later entry for the same stream is newer (see `app/state.rs`): it wins.
        streams.insert((service, stream), RestoredStream { next_ts, rows });
    }
    r.end()?;
    Ok(Restored { written_at, streams, dropped_slots })
}

fn not_ours() -> SnapshotError {
    SnapshotError::Foreign("not a fastly-exporter state file".to_string())
}

fn corrupt(why: String) -> SnapshotError {
    SnapshotError::Corrupt(why)
}

fn check_identity(found: &Identity, expect: &Identity) -> Result<(), SnapshotError> {
    let differ = |what: &str, a: &str, b: &str| {
        Err(SnapshotError::Foreign(format!("written with {what} {a:?}, this exporter runs with {b:?}")))
    };
    if found.namespace != expect.namespace {
        return differ("-namespace", &found.namespace, &expect.namespace);
    }
    if found.subsystem != expect.subsystem {
        return differ("-subsystem", &found.subsystem, &expect.subsystem);
    }
    if found.rows != expect.rows {
        return differ("rows by", &found.rows, &expect.rows);
    }
    Ok(())
}

/// Reads as much of `buf` as the input has; returns how much.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The decompressed body, read a buffer at a time.
struct Body<R: Read> {
    /// The `bufread` decoder consumes only the bytes of its member, so whatever follows it
    /// is still in the `BufReader` for [`Body::end`] to find.
    gz: GzDecoder<BufReader<R>>,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
}

impl<R: Read> Body<R> {
    fn refill(&mut self) -> Result<bool, SnapshotError> {
        loop {
            match self.gz.read(&mut self.buf) {
                Ok(n) => {
                    self.pos = 0;
                    self.len = n;
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(gz_error(e)),
            }
        }
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, SnapshotError> {
        if self.pos == self.len && !self.refill()? {
            return Err(SnapshotError::Truncated);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, SnapshotError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(corrupt("a number longer than 64 bits".to_string()))
    }

    fn string(&mut self) -> Result<String, SnapshotError> {
        let n = self.varint()?;
        if n > MAX_STRING {
            return Err(corrupt(format!("a {n}-byte name")));
        }
        let mut s = Vec::with_capacity(n as usize);
        for _ in 0..n {
            s.push(self.byte()?);
        }
        String::from_utf8(s).map_err(|_| corrupt("a name that is not UTF-8".to_string()))
    }

    fn value(&mut self) -> Result<f64, SnapshotError> {
        match self.varint()? {
            1 => {
                let mut b = [0u8; 8];
                for x in &mut b {
                    *x = self.byte()?;
                }
                Ok(f64::from_bits(u64::from_le_bytes(b)))
            }
            n if n & 1 == 0 => Ok((n >> 1) as f64),
            n => Err(corrupt(format!("unknown value tag {n}"))),
        }
    }

    /// After the end tag: the body must end here, its checksum must hold (the decoder checks
    /// it on reaching the end), and nothing may follow the gzip member.
    fn end(mut self) -> Result<(), SnapshotError> {
        if self.pos < self.len || self.refill()? {
            return Err(corrupt("data after the end".to_string()));
        }
        let mut rest = self.gz.into_inner();
        match rest.fill_buf() {
            Ok([]) => Ok(()),
            Ok(_) => Err(corrupt("data after the end".to_string())),
            Err(e) => Err(SnapshotError::Io(e)),
        }
    }
}

/// A decoder error: the input ended early, or the compressed data or its checksum is wrong.
fn gz_error(e: io::Error) -> SnapshotError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => SnapshotError::Truncated,
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => corrupt(e.to_string()),
        _ => SnapshotError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Batch, Interner, MergeContext, Registry, Scratch};

    fn id() -> Identity {
        Identity { namespace: "fastly".into(), subsystem: "rt".into(), rows: "datacenter".into() }
    }

    fn slot(stream: Stream, name: &str) -> usize {
        catalog().family(Scope::Stream(stream), name).unwrap().series[0].slot
    }

    /// Two services: one real-time table with odd values, one origin table.
    fn registry() -> Registry {
        let reg = Registry::new();
        let (a, _) = reg.upsert("svcA", "A", "1");
        let (b, _) = reg.upsert("svcB", "B", "1");
        let mut batch = Batch::default();
        let names = Interner::default();
        for (svc, stream, entity) in [(&a, Stream::Realtime, ""), (&b, Stream::Origin, "origin_0")] {
            batch.clear();
            for dc in ["AMS", "TYO"] {
                let d = batch.add_name(dc);
                let e = batch.add_name(entity);
                batch.begin_record(d, e);
                batch.end_record();
            }
            let def = catalog().stream(stream);
            let ctx = MergeContext { def, entity_label: stream.entity_label(), names: &names, now: 77, places: None };
            let mut t = svc.table_mut(stream);
            t.merge(&ctx, &batch, &mut Scratch::default());
            t.set_next_ts(1_700_000_123);
        }
        let mut t = a.table_mut(Stream::Realtime);
        let odd = [3.0, 0.1 + 0.2, -0.0, f64::NAN, 1e300, (1u64 << 53) as f64, 4_000_000_000.0, f64::INFINITY];
        let n = odd.len();
        for (i, v) in t_values(&mut t, 0).iter_mut().enumerate() {
            *v = odd[i % n];
        }
        drop(t);
        reg
    }

    fn t_values(t: &mut crate::store::StreamTable, row: usize) -> &mut [f64] {
        // Test-only access to a row's values.
        t.rows_mut_for_tests()[row].values.as_mut()
    }

    fn write(reg: &Registry, id: &Identity) -> Vec<u8> {
        let mut w = SnapshotWriter::new(Vec::new(), id, 42).unwrap();
        for svc in reg.snapshot() {
            w.service(&svc).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn every_value_comes_back_bit_for_bit() {
        let reg = registry();
        let bytes = write(&reg, &id());
        let back = read(&bytes[..], &id()).unwrap();
        assert_eq!(back.written_at, 42);
        assert_eq!(back.dropped_slots, 0);
        assert_eq!(back.streams.len(), 2, "tables without a position are not written");
        for svc in reg.snapshot() {
            for stream in Stream::ALL {
                let t = svc.table(stream);
                let Some(r) = back.streams.get(&(svc.id.to_string(), stream)) else {
                    assert_eq!(t.next_ts(), 0);
                    continue;
                };
                assert_eq!(r.next_ts, t.next_ts());
                assert_eq!(r.rows.len(), t.rows().len());
                for (a, b) in r.rows.iter().zip(t.rows()) {
                    assert_eq!((a.dc.as_str(), a.entity.as_str(), a.seen), (&*b.dc, &*b.entity, b.seen));
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&a.values), bits(&b.values));
                }
            }
        }
    }

    #[test]
    fn damage_is_detected_and_named() {
        let bytes = write(&registry(), &id());
        for cut in [0, 5, 12, 20, bytes.len() / 2, bytes.len() - 1] {
            let e = read(&bytes[..cut], &id()).unwrap_err();
            assert!(matches!(e, SnapshotError::Truncated), "cut at {cut}: {e}");
        }
        let mut flipped = bytes.clone();
        let mid = bytes.len() / 2;
        flipped[mid] ^= 0x55;
        let e = read(&flipped[..], &id()).unwrap_err();
        assert!(matches!(e, SnapshotError::Corrupt(_) | SnapshotError::Truncated), "{e}");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(read(&longer[..], &id()).unwrap_err(), SnapshotError::Corrupt(_)));
        assert!(matches!(read(&b"{\"json\": true}"[..], &id()).unwrap_err(), SnapshotError::Foreign(_)));
    }

    #[test]
    fn foreign_files_are_refused_with_the_reason() {
        let bytes = write(&registry(), &id());
        let other = Identity { namespace: "other".into(), ..id() };
        let e = read(&bytes[..], &other).unwrap_err().to_string();
        assert!(e.contains("-namespace \"fastly\"") && e.contains("\"other\""), "{e}");
        let agg = Identity { rows: "aggregate".into(), ..id() };
        assert!(read(&bytes[..], &agg).unwrap_err().to_string().contains("rows by"));
        let mut v2 = bytes.clone();
        v2[8] = 2;
        assert_eq!(
            read(&v2[..], &id()).unwrap_err().to_string(),
            "it is not this exporter's: format version 2; this exporter reads version 1"
        );
    }

    #[test]
    fn slots_are_matched_by_key() {
        let keys = slot_keys(Stream::Realtime);
        assert_eq!(keys.len(), catalog().stream(Stream::Realtime).slots);
        assert!(keys.iter().all(|k| !k.starts_with("#unassigned")), "every slot belongs to a series");
        let mut unique = keys.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "keys are unique");
        assert_eq!(keys[slot(Stream::Realtime, "requests_total")], "requests_total");
        // A file whose layout is reversed and has one unknown slot still restores by key.
        let body_layout = |w: &mut Vec<u8>, stream: Stream| {
            let mut ks: Vec<String> = slot_keys(stream).to_vec();
            if stream == Stream::Realtime {
                ks.reverse();
                ks.push("gone_total".into());
            }
            put_varint(w, ks.len() as u64);
            for k in &ks {
                put_str(w, k);
            }
            ks.len()
        };
        let mut body = Vec::new();
        for s in ["fastly", "rt", "datacenter"] {
            put_str(&mut body, s);
        }
        put_varint(&mut body, 9);
        let n = body_layout(&mut body, Stream::Realtime);
        body_layout(&mut body, Stream::Origin);
        body_layout(&mut body, Stream::Domain);
        put_varint(&mut body, 1);
        put_str(&mut body, "svc");
        put_varint(&mut body, 0);
        put_varint(&mut body, 1000);
        put_varint(&mut body, 1);
        put_str(&mut body, "AMS");
        put_str(&mut body, "");
        put_varint(&mut body, 5);
        for i in 0..n {
            put_value(&mut body, i as f64);
        }
        put_varint(&mut body, 0);
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&VERSION.to_le_bytes());
        let mut gz = GzEncoder::new(file, Compression::fast());
        gz.write_all(&body).unwrap();
        let file = gz.finish().unwrap();
        let back = read(&file[..], &id()).unwrap();
        assert_eq!(back.dropped_slots, 1);
        let row = &back.streams[&("svc".to_string(), Stream::Realtime)].rows[0];
        let slots = keys.len();
        // File slot i held key keys[slots-1-i] and value i.
        let req = slot(Stream::Realtime, "requests_total");
        assert_eq!(row.values[req], (slots - 1 - req) as f64);
    }

    #[test]
    fn a_later_entry_for_the_same_stream_wins() {
        let reg = registry();
        let a = reg.get("svcA").unwrap();
        let old = RestoredStream { next_ts: 5, rows: Vec::new() };
        let mut w = SnapshotWriter::new(Vec::new(), &id(), 1).unwrap();
        w.restored("svcA", Stream::Realtime, &old).unwrap();
        w.service(&a).unwrap();
        let back = read(&w.finish().unwrap()[..], &id()).unwrap();
        assert_eq!(back.streams[&("svcA".to_string(), Stream::Realtime)].next_ts, 1_700_000_123);
    }
}
