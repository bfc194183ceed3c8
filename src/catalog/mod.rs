//! The metric catalog: the single declaration of every exported family.
//!
//! `families.tsv` (embedded at compile time) is the one place where a family's name, type,
//! labels, JSON source and help text are written down. Everything else reads it: the stream
//! parser learns which JSON keys matter, the row layout learns how many `f64` slots a row
//! needs, the renderer learns names, help and label values, and `docs/metrics.md` is generated
//! from it. Adding a field the API grows is one line in the TSV.
//!
//! Source expressions (column `source`):
//! - `field` adds the JSON number; `field/1000` adds it divided by 1000 (ms → s);
//!   `a+b` adds both into one series;
//! - `a-b-c` adds `a - (b + c)` per record, or 0 when that would be negative (the Go exporter's
//!   unsigned-underflow guard for `http_version="1"`);
//! - for gauges the field's value is *set* per record (last record wins, 0 when absent);
//!   `field~w1+w2` also names the weight used when several datacenters share a row
//!   (`-datacenter-group`): the row gets the mean of the field weighted by `w1 + w2` of the
//!   same record, so a ratio combines as the ratio of the summed counts it is made of;
//! - histograms: `map(field,scale)` observes each `"<key>": count` entry of an object at
//!   `key*scale`; `obs(f1@v1,f2@v2,…)` observes each field's count at a fixed value;
//! - several series: `label=value[,label=value]:expr;…` with fixed label values.
//!
//! Scopes `service`, `account` and `exporter` have source `-`: their values come from service
//! metadata, account APIs and the exporter itself, handled by dedicated code that refers to
//! them through the typed identifiers of `ids.rs` (a line without an identifier, or an
//! identifier without a line, fails the parse); their names, types and help live here too.

pub mod docs;
mod ids;
mod selection;
mod spec;

pub use ids::{AccountFamily, ExporterFamily, ServiceFamily};
pub use selection::{Selected, Selection};

pub use spec::{
    Catalog, Family, FieldKind, Kind, NOT_DIRECT, RecordOp, Scope, Series, Source, Stream, StreamDef, Target,
    apply_field_types, bucket_index, parse_catalog,
};

use std::sync::OnceLock;

/// The catalog text, compiled into the binary so a deployed exporter needs no data files.
pub const FAMILIES_TSV: &str = include_str!("families.tsv");

/// The API's JSON field lists with types (copied from the compatibility reference), per stream
/// in `Stream::ALL` order.
pub const FIELD_TYPES: [&str; 3] = [
    include_str!("fields/realtime-fields.txt"),
    include_str!("fields/origin-fields.txt"),
    include_str!("fields/domain-fields.txt"),
];

/// The process-wide catalog, parsed once on first use.
///
/// Parsing is validated by unit tests; a malformed embedded catalog is a build defect, so
/// failing loudly at first use is the right response.
pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| match parse_catalog(FAMILIES_TSV) {
        Ok(mut c) => {
            for (def, list) in c.streams.iter_mut().zip(FIELD_TYPES) {
                apply_field_types(def, list);
            }
            c
        }
        Err(e) => panic!("embedded catalog families.tsv is invalid: {e}"),
    })
}

/// Joins namespace, subsystem and name the way Prometheus' Go client does (`BuildFQName`):
/// empty parts are skipped, so operators who blank `-subsystem` get `fastly_requests_total`.
pub fn fq_name(namespace: &str, subsystem: &str, name: &str) -> String {
    let mut out = String::with_capacity(namespace.len() + subsystem.len() + name.len() + 2);
    for part in [namespace, subsystem, name] {
        if part.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests;
