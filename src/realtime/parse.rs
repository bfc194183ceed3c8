//! One-pass parser of rt.fastly.com responses straight into a [`Batch`].
//!
//! Serde visitors walk `Data[].datacenter` (or `aggregated`) and look every key up in the
//! catalog's field index; values land in the batch as `(field, value)` pairs. There is no
//! `serde_json::Value`, no per-field allocation, and keys no family reads are skipped without
//! being materialised. Any error (truncation, bad JSON, a negative counter) fails the whole
//! body, and the caller discards the batch, so nothing is ever half-counted.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::catalog::{FieldKind, Stream, StreamDef, catalog};
use crate::table::Batch;

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

/// A body that did not parse; the message names the position.
#[derive(Debug)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// Parses `body` into `batch` (which is cleared first).
#[inline(never)]
pub fn parse_response(body: &[u8], stream: Stream, mode: Mode, batch: &mut Batch) -> Result<(), ParseError> {
    batch.clear();
    let ctx = Ctx { def: catalog().stream(stream), stream, mode };
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = EnvelopeSeed { ctx, batch: &mut *batch }.deserialize(&mut de).and_then(|()| de.end());
    result.map_err(|e| {
        batch.clear();
        ParseError(format!("invalid {} response: {e}", stream.name()))
    })
}

/// Implements `DeserializeSeed` + `Visitor` for a seed that walks one JSON container, so each
/// seed below is only its walking code. `nullable` seeds accept `null` as an empty container.
macro_rules! container_seed {
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
    Other,
}

struct RecordKeySeed;

str_seed!(RecordKeySeed, RecordKey, "a record key", |self, s| match s {
    "datacenter" => RecordKey::Datacenter,
    "aggregated" => RecordKey::Aggregated,
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
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
});

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

container_seed!(nullable EntitiesSeed, "a map of origins or domains", deserialize_map, fn visit_map<MapAccess>(self, map) {
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

container_seed!(FieldsSeed, "a stats object", deserialize_map, fn visit_map<MapAccess>(self, map) {
    let def = self.ctx.def;
    self.batch.begin_record(self.dc, self.entity);
    while let Some(key) = map.next_key_seed(FieldKeySeed(def))? {
        let Some(field) = key else {
            map.next_value::<IgnoredAny>()?;
            continue;
        };
        match def.field_kinds[field as usize] {
            FieldKind::Number => {
                if let Some(v) = map.next_value_seed(NumberSeed)? {
                    self.batch.push(field, v);
                }
            }
            FieldKind::Map => map.next_value_seed(CountsSeed { batch: &mut *self.batch, field })?,
        }
    }
    self.batch.end_record();
    Ok(())
});

/// A non-negative number (counters never go down); `null` reads as absent.
struct NumberSeed;

impl<'de> DeserializeSeed<'de> for NumberSeed {
    type Value = Option<f64>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for NumberSeed {
    type Value = Option<f64>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative number")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<f64>, E> {
        if v < 0 {
            return Err(E::invalid_value(de::Unexpected::Signed(v), &self));
        }
        Ok(Some(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<f64>, E> {
        if !(v >= 0.0 && v.is_finite()) {
            return Err(E::invalid_value(de::Unexpected::Float(v), &self));
        }
        Ok(Some(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<f64>, E> {
        Ok(None)
    }
}

/// `{"<integer>": count, …}`; keys that are not integers are skipped, as upstream does.
struct CountsSeed<'a> {
    batch: &'a mut Batch,
    field: u16,
}

struct IntKeySeed;

str_seed!(IntKeySeed, Option<f64>, "an integer key", |self, s| s.parse::<i64>().ok().map(|k| k as f64));

container_seed!(nullable CountsSeed, "an object of counts", deserialize_map, fn visit_map<MapAccess>(self, map) {
    while let Some(key) = map.next_key_seed(IntKeySeed)? {
        let count = map.next_value_seed(NumberSeed)?;
        if let (Some(k), Some(c)) = (key, count) {
            self.batch.push_keyed(self.field, k, c);
        }
    }
    Ok(())
});
