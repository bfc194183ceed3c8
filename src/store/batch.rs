//! A parsed response, held apart from the table until the whole body has parsed.
//!
//! Merging only complete batches is what makes counters exact: a truncated or malformed body
//! fails in the parser and adds nothing. The batch is flat (one arena for names, one vector of
//! entries) and reused across polls, so steady-state parsing allocates nothing.

use std::ops::Range;

/// One JSON value destined for a row: a field number from the catalog, and for map fields
/// (`miss_histogram`) the numeric key the count belongs to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Entry {
    /// Field number in the stream's catalog plan.
    pub field: u16,
    /// Map key (e.g. latency in ms); 0 for plain numbers.
    pub key: f64,
    /// The number itself.
    pub value: f64,
}

/// Why a value of an answer was skipped instead of merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Invalid {
    /// Below zero: counters never go down.
    Negative,
    /// Not a whole number where the API sends counts.
    Fractional,
    /// Too large to be a real figure (beyond 2^53, or beyond the range of a float).
    OutOfRange,
    /// A string, boolean, list or object where a number belongs.
    NotANumber,
    /// `null`.
    Null,
    /// A datacenter (or origin/domain) entry that is not an object of fields.
    NotAnObject,
}

impl Invalid {
    /// For log lines.
    pub fn describe(self) -> &'static str {
        match self {
            Invalid::Negative => "negative",
            Invalid::Fractional => "fractional where the API sends counts",
            Invalid::OutOfRange => "out of range",
            Invalid::NotANumber => "not a number",
            Invalid::Null => "null",
            Invalid::NotAnObject => "not an object of fields",
        }
    }
}

/// One skipped value: which field (`None`: a whole datacenter record) and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    /// Field number, or `None` when the record itself was unusable.
    pub field: Option<u16>,
    /// What was wrong with it.
    pub problem: Invalid,
}

#[derive(Clone, Debug)]
struct Record {
    dc: Range<u32>,
    entity: Range<u32>,
    entries: Range<u32>,
}

/// Records of one response in arrival order, each addressed to a (datacenter, entity) row.
#[derive(Debug, Default)]
pub struct Batch {
    names: String,
    records: Vec<Record>,
    entries: Vec<Entry>,
    open: Option<(Range<u32>, Range<u32>, u32)>,
    /// The `Timestamp` of the envelope: the `ts` of the next poll.
    pub timestamp: Option<u64>,
    /// The envelope's `Error` string (e.g. "No data available, please retry").
    pub error: Option<String>,
    /// The earliest `recorded` second of the answer's records: when it is later than the
    /// `ts` asked for, the API no longer held the seconds in between.
    pub first_recorded: Option<u64>,
    /// Values skipped as invalid; everything else of the answer is merged.
    pub skipped: Vec<Skipped>,
    /// Scratch of the fast reader (`upstream::realtime::scan`), kept with the batch so it
    /// outlives one answer: for each field, the field that followed it last time (the API
    /// writes keys in a fixed order, omitting zeros). Not part of the parsed answer.
    pub key_order: Vec<u16>,
}

/// A borrowed view of one record.
#[derive(Debug)]
pub struct RecordView<'a> {
    /// Datacenter code, or `aggregate`.
    pub dc: &'a str,
    /// Origin or domain name; empty for the real-time stream.
    pub entity: &'a str,
    /// The values, in JSON order.
    pub entries: &'a [Entry],
}

impl Batch {
    /// Empties the batch, keeping its buffers for the next poll.
    pub fn clear(&mut self) {
        self.names.clear();
        self.records.clear();
        self.entries.clear();
        self.open = None;
        self.timestamp = None;
        self.error = None;
        self.first_recorded = None;
        self.skipped.clear();
    }

    /// Notes a record's `recorded` second.
    pub fn note_recorded(&mut self, second: u64) {
        self.first_recorded = Some(self.first_recorded.map_or(second, |s| s.min(second)));
    }

    /// Stores a name once so several records (one per origin of a datacenter) can share it.
    pub fn add_name(&mut self, name: &str) -> Range<u32> {
        let start = self.names.len() as u32;
        self.names.push_str(name);
        start..self.names.len() as u32
    }

    /// Opens a record for the row `(dc, entity)`; both are ranges from [`Batch::add_name`].
    pub fn begin_record(&mut self, dc: Range<u32>, entity: Range<u32>) {
        self.open = Some((dc, entity, self.entries.len() as u32));
    }

    /// Adds a plain number to the open record.
    pub fn push(&mut self, field: u16, value: f64) {
        self.entries.push(Entry { field, key: 0.0, value });
    }

    /// Marks a number field of the open record as present but invalid: it adds nothing, and a
    /// gauge keeps its previous value instead of reading as absent (0).
    pub fn push_invalid(&mut self, field: u16, problem: Invalid) {
        self.entries.push(Entry { field, key: 0.0, value: f64::NAN });
        self.skipped.push(Skipped { field: Some(field), problem });
    }

    /// Records a skipped map entry or record (nothing is merged for it).
    pub fn skip(&mut self, field: Option<u16>, problem: Invalid) {
        self.skipped.push(Skipped { field, problem });
    }

    /// Adds one `"<key>": count` entry of a map field to the open record.
    pub fn push_keyed(&mut self, field: u16, key: f64, value: f64) {
        self.entries.push(Entry { field, key, value });
    }

    /// Closes the open record; an empty record still creates its row (all zeros), as upstream.
    pub fn end_record(&mut self) {
        if let Some((dc, entity, start)) = self.open.take() {
            let entries = start..self.entries.len() as u32;
            self.records.push(Record { dc, entity, entries });
        }
    }

    /// Number of complete records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record was parsed (e.g. a "No data" answer).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records in arrival order.
    pub fn records(&self) -> impl Iterator<Item = RecordView<'_>> {
        self.records.iter().map(|r| RecordView {
            dc: &self.names[r.dc.start as usize..r.dc.end as usize],
            entity: &self.names[r.entity.start as usize..r.entity.end as usize],
            entries: &self.entries[r.entries.start as usize..r.entries.end as usize],
        })
    }
}
