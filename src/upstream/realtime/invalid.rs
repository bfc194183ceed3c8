//! Invalid values in real-time answers: counted, and logged once per stream and field.
//!
//! The parser skips a bad value and merges the rest (see `parse.rs`); this is where an
//! operator learns about it. A field that arrives broken every second must not write a line
//! every second, but the first occurrence names the field, the problem and where it was seen.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::catalog::{Stream, catalog};
use crate::store::{Batch, Counters};

/// The (stream, field) pairs already logged.
#[derive(Debug, Default)]
pub struct InvalidFields {
    logged: Mutex<HashSet<(Stream, Option<u16>)>>,
}

impl InvalidFields {
    /// Counts (in `counters`) and logs the values `batch` skipped in an answer for `service`.
    pub fn report(&self, stream: Stream, service: &str, batch: &Batch, counters: &Counters) {
        counters.count_invalid(stream, batch.skipped.len() as u64);
        let def = catalog().stream(stream);
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        for s in &batch.skipped {
            if !logged.insert((stream, s.field)) {
                continue;
            }
            let what = match s.field.and_then(|f| def.fields.get(f as usize)) {
                Some(name) => format!("field {name:?} was {}", s.problem.describe()),
                None => format!("a datacenter entry was {}", s.problem.describe()),
            };
            log::warn!(
                "service {service}: {} answer: {what}; skipped it and merged the rest of the answer \
                 (counted in fastly_exporter_invalid_fields_total; logged once per stream and field)",
                stream.name()
            );
        }
    }
}
