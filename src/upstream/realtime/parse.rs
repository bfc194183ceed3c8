//! One-pass parser of rt.fastly.com responses straight into a [`Batch`]; the fast reader in
//! `scan.rs` takes the plain form of an answer first and leaves everything else to this one.
//!
//! Serde visitors walk `Data[].datacenter` (or `aggregated`) and look every key up in the
//! catalog's field index; values land in the batch as `(field, value)` pairs. There is no
//! `serde_json::Value`, no per-field allocation, and keys no family reads are skipped without
//! being materialised.
//!
//! One bad value never costs the rest of the answer: a negative, fractional (for counts),
//! out-of-range, non-numeric or null field is skipped and listed in `Batch::skipped`; a
//! datacenter (or origin/domain) entry that is not an object is skipped whole. Only a body
//! that is not JSON of the expected shape (truncated, malformed) fails, and then the caller
//! discards the batch, so nothing is ever half-counted. The one value serde_json cannot skip
//! by itself, a number beyond the range of a float (`1e400`), is found from the error's
//! position and neutralised by [`parse_tolerant`] before parsing again.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::catalog::{FieldKind, Stream, StreamDef, catalog};
use crate::store::{Batch, Invalid};

use super::scan::parse_fast;

/// Which block of each record feeds the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `datacenter`: one row per datacenter (the default).
    PerDatacenter,
    /// `aggregated`: one row labelled `datacenter="aggregate"` (`-aggregate-only`).
    Aggregate,
}

/// The label value of the aggregated pseudo-datacenter.
pub const AGGREGATE_DC: &str = "aggregate";

/// A body that did not parse: which stream's, and serde_json's error (which names the
/// position).
#[derive(Debug)]
pub struct ParseError {
    stream: Stream,
    error: serde_json::Error,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} response: {}", self.stream.name(), self.error)
    }
}

impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Parses `body` into `batch` (which is cleared first): the fast reader (`scan.rs`) for the
/// plain form of an answer, the serde parser for everything else.
pub fn parse_response(body: &[u8], stream: Stream, mode: Mode, batch: &mut Batch) -> Result<(), ParseError> {
    if parse_fast(body, stream, mode, batch).is_ok() {
        return Ok(());
    }
    parse_serde(body, stream, mode, batch)
}

/// The serde parser alone: the reference the fast reader is held to, and what decides every
/// body that reader does not take.
#[inline(never)]
pub fn parse_serde(body: &[u8], stream: Stream, mode: Mode, batch: &mut Batch) -> Result<(), ParseError> {
    batch.clear();
    let ctx = Ctx { def: catalog().stream(stream), stream, mode };
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = EnvelopeSeed { ctx, batch: &mut *batch }.deserialize(&mut de).and_then(|()| de.end());
    result.map_err(|e| {
        batch.clear();
        ParseError { stream, error: e }
    })
}

/// How many out-of-range numbers one body may have neutralised before it counts as broken.
const MAX_REPAIRS: usize = 64;

/// [`parse_response`], plus the repair of numbers beyond the range of a float: serde_json
/// fails the whole body on `1e400`, so the number at the error's position is overwritten with
/// a same-length string of `!` (which the field parser reports as out of range) and the body
/// parsed again. Returns how many numbers were neutralised.
pub fn parse_tolerant(body: &mut [u8], stream: Stream, mode: Mode, batch: &mut Batch) -> Result<usize, ParseError> {
    if parse_fast(body, stream, mode, batch).is_ok() {
        return Ok(0);
    }
    let mut repaired = 0;
    loop {
        match parse_serde(body, stream, mode, batch) {
            Ok(()) => return Ok(repaired),
            Err(e) if repaired < MAX_REPAIRS && neutralise_number(body, e.error.line(), e.error.column()) => {
                repaired += 1
            }
            Err(e) => return Err(e),
        }
    }
}

/// Overwrites the number token ending at (`line`, `column`) with `"!…!"` when it is a number
/// that does not fit a float; false (body unchanged) for any other error.
fn neutralise_number(body: &mut [u8], line: usize, column: usize) -> bool {
    let line_start = if line <= 1 {
        0
    } else {
        match body.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(line - 2) {
            Some((i, _)) => i + 1,
            None => return false,
        }
    };
    let Some(last) = (line_start + column).checked_sub(1).filter(|i| *i < body.len()) else {
        return false;
    };
    let is_num = |b: u8| b.is_ascii_digit() || b"+-.eE".contains(&b);
    let mut start = last + 1;
    while start > 0 && is_num(body[start - 1]) {
        start -= 1;
    }
    let token = &body[start..=last];
    let out_of_range = token.len() >= 2
        && std::str::from_utf8(token).ok().and_then(|s| s.parse::<f64>().ok()).is_some_and(|v| v.is_infinite());
    if !out_of_range {
        return false;
    }
    let end = token.len() - 1;
    for (i, b) in body[start..=last].iter_mut().enumerate() {
        *b = if i == 0 || i == end { b'"' } else { b'!' };
    }
    true
}

/// Implements `DeserializeSeed` + `Visitor` for a seed that walks one JSON container, so each
/// seed below is only its walking code. `nullable` seeds accept `null` as an empty container;
/// `tolerant` seeds take any value and record anything but an object through `self.wrong`
/// (see [`tolerate_other_values`]), so one bad record never fails the answer.
macro_rules! container_seed {
    (tolerant $seed:ident, $what:literal, fn visit_map($this:ident, $acc:ident) $body:block) => {
        impl<'de> DeserializeSeed<'de> for $seed<'_> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_any(self)
            }
        }
        impl<'de> Visitor<'de> for $seed<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($what)
            }
            tolerate_other_values!();
            fn visit_map<A: MapAccess<'de>>($this, mut $acc: A) -> Result<(), A::Error> $body
        }
    };
    (nullable $seed:ident, $what:literal, $deser:ident, fn $visit:ident<$acc_t:ident>($this:ident, $acc:ident) $body:block) => {
        impl<'de> DeserializeSeed<'de> for $seed<'_> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_option(self)
            }
        }
        impl<'de> Visitor<'de> for $seed<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($what)
            }
            fn visit_none<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.$deser(self)
            }
            fn $visit<A: $acc_t<'de>>($this, mut $acc: A) -> Result<(), A::Error> $body
        }
    };
    ($seed:ident, $what:literal, $deser:ident, fn $visit:ident<$acc_t:ident>($this:ident, $acc:ident) $body:block) => {
        impl<'de> DeserializeSeed<'de> for $seed<'_> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.$deser(self)
            }
        }
        impl<'de> Visitor<'de> for $seed<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($what)
            }
            fn $visit<A: $acc_t<'de>>($this, mut $acc: A) -> Result<(), A::Error> $body
        }
    };
}

/// Implements a seed that reads one JSON string (a map key) and turns it into a value.
macro_rules! str_seed {
    ($seed:ty, $out:ty, $what:literal, |$this:ident, $s:ident| $body:expr) => {
        impl<'de> DeserializeSeed<'de> for $seed {
            type Value = $out;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<$out, D::Error> {
                d.deserialize_str(self)
            }
        }
        impl Visitor<'_> for $seed {
            type Value = $out;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($what)
            }
            fn visit_str<E: de::Error>($this, $s: &str) -> Result<$out, E> {
                Ok($body)
            }
        }
    };
}

/// Visitor methods for every kind of value a tolerant seed does not want: the value is
/// consumed and `self.wrong(problem)` records it, so the rest of the answer still parses.
macro_rules! tolerate_other_values {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            self.wrong(Invalid::NotAnObject);
            Ok(())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            self.wrong(Invalid::NotAnObject);
            Ok(())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            self.wrong(Invalid::NotAnObject);
            Ok(())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            self.wrong(Invalid::NotAnObject);
            Ok(())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            self.wrong(Invalid::NotAnObject);
            Ok(())
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            self.wrong(Invalid::Null);
            Ok(())
        }
        fn visit_none<E: de::Error>(self) -> Result<(), E> {
            self.wrong(Invalid::Null);
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            self.wrong(Invalid::NotAnObject);
            Ok(())
        }
    };
}

#[derive(Clone, Copy)]
struct Ctx<'a> {
    def: &'a StreamDef,
    stream: Stream,
    mode: Mode,
}

struct EnvelopeSeed<'a> {
    ctx: Ctx<'a>,
    batch: &'a mut Batch,
}

enum EnvKey {
    Data,
    Timestamp,
    Error,
    Other,
}

struct EnvKeySeed;

str_seed!(EnvKeySeed, EnvKey, "a key", |self, s| match s {
    "Data" => EnvKey::Data,
    "Timestamp" => EnvKey::Timestamp,
    "Error" | "error" => EnvKey::Error,
    _ => EnvKey::Other,
});

container_seed!(EnvelopeSeed, "a real-time response object", deserialize_map, fn visit_map<MapAccess>(self, map) {
    while let Some(key) = map.next_key_seed(EnvKeySeed)? {
        match key {
            EnvKey::Data => map.next_value_seed(DataSeed { ctx: self.ctx, batch: &mut *self.batch })?,
            EnvKey::Timestamp => self.batch.timestamp = map.next_value::<Option<u64>>()?,
            EnvKey::Error => self.batch.error = map.next_value::<Option<String>>()?,
            EnvKey::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
});

/// `Data`: a list of one-second records (or null).
struct DataSeed<'a> {
    ctx: Ctx<'a>,
    batch: &'a mut Batch,
}

container_seed!(nullable DataSeed, "a list of records", deserialize_seq, fn visit_seq<SeqAccess>(self, seq) {
    while seq.next_element_seed(RecordSeed { ctx: self.ctx, batch: &mut *self.batch })?.is_some() {}
    Ok(())
});

/// One record: `{"datacenter": {...}, "aggregated": {...}, "recorded": n}`.
struct RecordSeed<'a> {
    ctx: Ctx<'a>,
    batch: &'a mut Batch,
}

enum RecordKey {
    Datacenter,
    Aggregated,
    Recorded,
    Other,
}

struct RecordKeySeed;

str_seed!(RecordKeySeed, RecordKey, "a record key", |self, s| match s {
    "datacenter" => RecordKey::Datacenter,
    "aggregated" => RecordKey::Aggregated,
    "recorded" => RecordKey::Recorded,
    _ => RecordKey::Other,
});

container_seed!(RecordSeed, "a record object", deserialize_map, fn visit_map<MapAccess>(self, map) {
    let Ctx { mode, stream, .. } = self.ctx;
    while let Some(key) = map.next_key_seed(RecordKeySeed)? {
        match (key, mode) {
            (RecordKey::Datacenter, Mode::PerDatacenter) => {
                map.next_value_seed(DatacentersSeed { ctx: self.ctx, batch: &mut *self.batch })?;
            }
            (RecordKey::Aggregated, Mode::Aggregate) => {
                let dc = self.batch.add_name(AGGREGATE_DC);
                let batch = &mut *self.batch;
                if stream == Stream::Realtime {
                    map.next_value_seed(FieldsSeed { ctx: self.ctx, batch, dc, entity: 0..0 })?;
                } else {
                    map.next_value_seed(EntitiesSeed { ctx: self.ctx, batch, dc })?;
                }
            }
            (RecordKey::Recorded, _) => map.next_value_seed(RecordedSeed { batch: &mut *self.batch })?,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
});

/// A record's `recorded` second; anything but a whole non-negative number is ignored (it
/// only serves to notice seconds the API no longer held, never to count data).
struct RecordedSeed<'a> {
    batch: &'a mut Batch,
}

impl<'de> DeserializeSeed<'de> for RecordedSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordedSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a unix second")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.batch.note_recorded(v);
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        if let Ok(v) = u64::try_from(v) {
            self.batch.note_recorded(v);
        }
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if v >= 0.0 && v.fract() == 0.0 && v < 1e15 {
            self.batch.note_recorded(v as u64);
        }
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// Copies a map key (datacenter, origin or domain name) into the batch's name arena.
struct NameSeed<'a> {
    batch: &'a mut Batch,
}

str_seed!(NameSeed<'_>, Range<u32>, "a name", |self, s| self.batch.add_name(s));

/// `datacenter`: datacenter code → fields (real-time) or → entity map (origins, domains).
struct DatacentersSeed<'a> {
    ctx: Ctx<'a>,
    batch: &'a mut Batch,
}

container_seed!(nullable DatacentersSeed, "a map of datacenters", deserialize_map, fn visit_map<MapAccess>(self, map) {
    while let Some(dc) = map.next_key_seed(NameSeed { batch: &mut *self.batch })? {
        let batch = &mut *self.batch;
        if self.ctx.stream == Stream::Realtime {
            map.next_value_seed(FieldsSeed { ctx: self.ctx, batch, dc, entity: 0..0 })?;
        } else {
            map.next_value_seed(EntitiesSeed { ctx: self.ctx, batch, dc })?;
        }
    }
    Ok(())
});

/// Origin or domain name → fields, within one datacenter (or the aggregate).
struct EntitiesSeed<'a> {
    ctx: Ctx<'a>,
    batch: &'a mut Batch,
    dc: Range<u32>,
}

impl EntitiesSeed<'_> {
    /// The datacenter's entry is not an object of origins or domains: skip it whole.
    fn wrong(self, problem: Invalid) {
        self.batch.skip(None, problem);
    }
}

container_seed!(tolerant EntitiesSeed, "a map of origins or domains", fn visit_map(self, map) {
    while let Some(entity) = map.next_key_seed(NameSeed { batch: &mut *self.batch })? {
        let batch = &mut *self.batch;
        map.next_value_seed(FieldsSeed { ctx: self.ctx, batch, dc: self.dc.clone(), entity })?;
    }
    Ok(())
});

/// One stats object: every key is looked up in the catalog and its value added to the record.
struct FieldsSeed<'a> {
    ctx: Ctx<'a>,
    batch: &'a mut Batch,
    dc: Range<u32>,
    entity: Range<u32>,
}

struct FieldKeySeed<'a>(&'a StreamDef);

impl<'de> DeserializeSeed<'de> for FieldKeySeed<'_> {
    type Value = Option<u16>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<u16>, D::Error> {
        // Raw bytes: keys are matched against ASCII catalog names, so UTF-8 validation of
        // every key (a measurable share of ingest) is unnecessary.
        d.deserialize_bytes(self)
    }
}

impl Visitor<'_> for FieldKeySeed<'_> {
    type Value = Option<u16>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Option<u16>, E> {
        Ok(self.0.field_bytes(b))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<u16>, E> {
        Ok(self.0.field(s))
    }
}

impl FieldsSeed<'_> {
    /// The record is not an object of fields: skip it whole.
    fn wrong(self, problem: Invalid) {
        self.batch.skip(None, problem);
    }
}

container_seed!(tolerant FieldsSeed, "a stats object", fn visit_map(self, map) {
    let def = self.ctx.def;
    self.batch.begin_record(self.dc, self.entity);
    while let Some(key) = map.next_key_seed(FieldKeySeed(def))? {
        let Some(field) = key else {
            map.next_value::<IgnoredAny>()?;
            continue;
        };
        match def.field_kinds[field as usize] {
            FieldKind::Number => {
                let integral = def.integral.get(field as usize).copied().unwrap_or(false);
                match map.next_value_seed(NumberSeed { integral })? {
                    Ok(v) => self.batch.push(field, v),
                    Err(problem) => self.batch.push_invalid(field, problem),
                }
            }
            FieldKind::Map => map.next_value_seed(CountsSeed { batch: &mut *self.batch, field })?,
        }
    }
    self.batch.end_record();
    Ok(())
});

/// The largest integer a float holds exactly; a count beyond it is not a real figure.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// One field's value: `Ok` a usable non-negative number, `Err` why it is skipped. Counts
/// (`integral`) must also be whole numbers.
struct NumberSeed {
    integral: bool,
}

impl<'de> DeserializeSeed<'de> for NumberSeed {
    type Value = Result<f64, Invalid>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NumberSeed {
    type Value = Result<f64, Invalid>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative number")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.visit_f64(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.visit_f64(v as f64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(if v.is_nan() || v.abs() > MAX_EXACT {
            Err(Invalid::OutOfRange)
        } else if v < 0.0 {
            Err(Invalid::Negative)
        } else if self.integral && v.fract() != 0.0 {
            Err(Invalid::Fractional)
        } else {
            Ok(v)
        })
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        // `parse_tolerant` writes out-of-range numbers as strings of `!`.
        let neutralised = !s.is_empty() && s.bytes().all(|b| b == b'!');
        Ok(Err(if neutralised { Invalid::OutOfRange } else { Invalid::NotANumber }))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(Invalid::NotANumber))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(Invalid::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(Invalid::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(Invalid::NotANumber))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Err(Invalid::NotANumber))
    }
}

/// `{"<integer>": count, …}`; keys that are not integers are skipped, as upstream does.
struct CountsSeed<'a> {
    batch: &'a mut Batch,
    field: u16,
}

struct IntKeySeed;

str_seed!(IntKeySeed, Option<f64>, "an integer key", |self, s| s.parse::<i64>().ok().map(|k| k as f64));

impl CountsSeed<'_> {
    /// The field is not an object of counts: skip it.
    fn wrong(self, problem: Invalid) {
        self.batch.skip(Some(self.field), problem);
    }
}

container_seed!(tolerant CountsSeed, "an object of counts", fn visit_map(self, map) {
    while let Some(key) = map.next_key_seed(IntKeySeed)? {
        match (key, map.next_value_seed(NumberSeed { integral: true })?) {
            (Some(k), Ok(c)) => self.batch.push_keyed(self.field, k, c),
            (None, _) => {}
            (Some(_), Err(problem)) => self.batch.skip(Some(self.field), problem),
        }
    }
    Ok(())
});
