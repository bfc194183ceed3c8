//! The rows of one stream of one service: a dense `f64` array per (datacenter, entity).
//!
//! Each row holds every series of every family of its stream at the slot the catalog assigned,
//! so 287 real-time series cost 2.3 KB, about 8 bytes each, and the series exist (as zeros) the
//! moment a datacenter first appears, as the Go exporter's do.

use std::sync::Arc;

use crate::catalog::{FieldKind, NOT_DIRECT, RecordOp, StreamDef, Target, bucket_index};
use crate::util::exposition::push_label;

use super::batch::{Batch, RecordView};
use super::health::CatchingUp;
use super::intern::Interner;
use super::placement::Places;
use super::snapshot::RestoredRow;

/// One (datacenter, entity) row.
#[derive(Debug)]
pub struct Row {
    /// Datacenter code (interned: a thousand services share a handful of strings).
    pub dc: Arc<str>,
    /// Origin or domain; empty for the real-time stream.
    pub entity: Arc<str>,
    /// `datacenter="…"[,origin="…"|,domain="…"]`, escaped once here instead of per scrape.
    pub labels: Box<str>,
    /// Values indexed by catalog slot.
    pub values: Box<[f64]>,
    /// Unix second of the last answer with a record for this row (for the expiry of
    /// origins and domains that stopped reporting).
    pub seen: u32,
    /// Under `-datacenter-group`: the POPs (by placement index) whose data this row holds, so
    /// the exporter can tell what per-POP rows would cost. Empty (no allocation) otherwise.
    pub pops: Box<[u64]>,
}

/// What a merge needs besides the batch: the stream's plan, its entity label, the shared
/// names and the time of the answer.
#[derive(Clone, Copy, Debug)]
pub struct MergeContext<'a> {
    /// The stream's ingest plan.
    pub def: &'a StreamDef,
    /// `origin` or `domain`, or none for the real-time stream.
    pub entity_label: Option<&'a str>,
    /// Where row names are interned.
    pub names: &'a Interner,
    /// Unix second of the answer.
    pub now: u32,
    /// Where each record goes (datacenter filters, `-datacenter-group`); `None`: every record
    /// to its own datacenter's row.
    pub places: Option<&'a Places>,
}

/// Reusable scratch space for merging: the current record as a dense array, and the rows as
/// they were before the merge in progress.
#[derive(Debug, Default)]
pub struct Scratch {
    dense: Vec<f64>,
    touched: Vec<u16>,
    /// One bit per field: seen in the record being applied (both paths, see [`apply_record`]).
    seen: Vec<u64>,
    /// Row of each record of the batch, resolved before any value changes.
    rows: Vec<u32>,
    /// The values of each record's row just before the record was applied, record after
    /// record (a row that appears twice is saved twice; restoring in reverse order ends with
    /// the first copy, the original).
    undo: Vec<f64>,
    /// Gauge values of records that share a row with other POPs' records, to be combined once
    /// every record is applied.
    gauges: Vec<GaugeObs>,
}

/// One record's value of one gauge, with its weight, for a row several POPs feed.
#[derive(Clone, Copy, Debug)]
struct GaugeObs {
    row: u32,
    /// Index of the gauge's `RecordOp::Set` in the stream's record ops.
    op: u16,
    value: f64,
    weight: f64,
}

/// A record that goes to no row (dropped by the datacenter filters).
const SKIP: u32 = u32::MAX;

impl Scratch {
    /// Forgets everything, including state a panic left behind mid-record.
    pub fn reset(&mut self) {
        self.dense.fill(0.0);
        self.touched.clear();
        self.seen.fill(0);
        self.rows.clear();
        self.undo.clear();
        self.gauges.clear();
    }
}

/// All rows of one stream of one service, sorted by (datacenter, entity), and the stream's
/// position: the `ts` of its next poll.
///
/// The position lives here, not only in the poller, so that whoever holds this table's lock
/// sees values and position that belong together: every second before `next_ts`, and no
/// other, is in the rows (the state file is written from such a pair).
#[derive(Debug, Default)]
pub struct StreamTable {
    rows: Vec<Row>,
    /// Bumped whenever the set of rows (or a row's set of POPs) changes, so what is derived
    /// from the row set (the series census) is recomputed only then.
    version: u64,
    next_ts: u64,
    catch_up: Option<CatchUp>,
}

/// A stream restored from the state file that has not reached the present yet.
#[derive(Debug)]
struct CatchUp {
    /// Caught up once `next_ts` reaches this unix second (the start of this process).
    until: u64,
    /// Holds `/readyz` at "catching up" until dropped.
    _ready: CatchingUp,
}

impl StreamTable {
    /// The rows in render order.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Changes whenever rows are added or dropped, or a group row gets data of a new POP.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Drops every row and the position (the service left, or the product entitlement was
    /// lost): a later poller of this stream starts afresh.
    pub fn clear(&mut self) {
        self.rows = Vec::new();
        self.version += 1;
        self.next_ts = 0;
        self.catch_up = None;
    }

    /// Mutable rows, for unit tests that need odd values.
    #[cfg(test)]
    pub fn rows_mut_for_tests(&mut self) -> &mut [Row] {
        &mut self.rows
    }

    /// The `ts` of the next poll: 0 before the first answer (the API's latest second), or the
    /// `Timestamp` of the last merged answer, or a position restored from the state file.
    pub fn next_ts(&self) -> u64 {
        self.next_ts
    }

    /// Records the position reached by the answer just merged (same lock as the merge).
    pub fn set_next_ts(&mut self, ts: u64) {
        self.next_ts = ts;
    }

    /// True while a restored stream is catching up: its rows may hold less than a scraper saw
    /// before a crash, so they are not rendered (see `ARCHITECTURE.md`, "Restarts").
    pub fn hidden(&self) -> bool {
        self.catch_up.is_some()
    }

    /// The unix second a restored stream must reach to count as caught up, while it has not.
    pub fn catch_up_until(&self) -> Option<u64> {
        self.catch_up.as_ref().map(|c| c.until)
    }

    /// Ends catching up: the rows are rendered again and readiness is released. Returns
    /// whether the stream was catching up.
    pub fn caught_up(&mut self) -> bool {
        self.catch_up.take().is_some()
    }

    /// Replaces the rows and position with ones restored from the state file. With `until`,
    /// the stream catches up first (hidden, holding `ready`) unless `next_ts` already reached
    /// it. Rows come sorted or not; duplicates keep the last.
    pub fn restore(
        &mut self,
        ctx: &RestoreContext<'_>,
        rows: Vec<RestoredRow>,
        next_ts: u64,
        until: Option<(u64, CatchingUp)>,
    ) {
        let mut out: Vec<Row> = Vec::with_capacity(rows.len());
        for r in rows {
            if r.values.len() != ctx.slots {
                continue;
            }
            out.push(new_row(ctx.names, ctx.entity_label, &r.dc, &r.entity, r.values, r.seen));
        }
        out.sort_by(|a, b| (&*a.dc, &*a.entity).cmp(&(&*b.dc, &*b.entity)));
        out.reverse();
        out.dedup_by(|a, b| a.dc == b.dc && a.entity == b.entity);
        out.reverse();
        self.rows = out;
        self.version += 1;
        self.next_ts = next_ts;
        self.catch_up = until.filter(|(u, _)| next_ts < *u).map(|(until, ready)| CatchUp { until, _ready: ready });
    }

    /// Drops rows whose last record is older than `cutoff` (unix seconds); returns how many.
    /// Their names are released for the interner's next sweep.
    pub fn expire(&mut self, cutoff: u32) -> usize {
        let before = self.rows.len();
        self.rows.retain(|r| r.seen >= cutoff);
        if self.rows.len() < before {
            self.rows.shrink_to(self.rows.len() * 2);
            self.version += 1;
        }
        before - self.rows.len()
    }

    /// Adds every record of `batch` to its row, creating rows as datacenters appear.
    ///
    /// All or nothing: rows are created first (an empty row changes no value), then each
    /// row's values are copied aside before its record is applied, and if anything panics
    /// mid-merge the copies are put back before the panic goes on. (Copying a whole row, a
    /// few hundred values, costs less than journaling each write: a merge writes most of them.) The poller then asks for the same `ts` again, so a record is
    /// never counted twice. Runs under the table's write lock; cost is proportional to the
    /// values present in the batch, not to the catalog size.
    #[inline(never)]
    pub fn merge(&mut self, ctx: &MergeContext<'_>, batch: &Batch, scratch: &mut Scratch) {
        let def = ctx.def;
        if scratch.dense.len() != def.fields.len() {
            scratch.dense = vec![0.0; def.fields.len()];
            scratch.seen = vec![0; def.fields.len().div_ceil(64)];
        }
        scratch.rows.clear();
        scratch.undo.clear();
        scratch.gauges.clear();
        let places = ctx.places;
        let mut inserted = false;
        for (i, rec) in batch.records().enumerate() {
            let Some(dc) = target(places, i, rec.dc) else {
                scratch.rows.push(SKIP);
                continue;
            };
            let (idx, new) = self.row_index(ctx, dc, rec.entity);
            inserted |= new;
            let row = &mut self.rows[idx];
            row.seen = ctx.now;
            // Outside the undo journal: a set bit is true as soon as the POP's record is
            // merged, and the retry of an undone merge sets the same bit again.
            if let Some(pop) = places.and_then(|p| p.grouped_pop(i))
                && set_bit(&mut row.pops, pop)
            {
                self.version += 1;
            }
            scratch.rows.push(idx as u32);
        }
        if inserted {
            self.version += 1;
            // An insertion shifts the rows after it: resolve every record again.
            scratch.rows.clear();
            for (i, rec) in batch.records().enumerate() {
                let idx = match target(places, i, rec.dc) {
                    Some(dc) => self.find(dc, rec.entity).unwrap_or_else(|| unreachable!("every row exists now")),
                    None => SKIP as usize,
                };
                scratch.rows.push(idx as u32);
            }
        }
        let grouped = places.is_some_and(Places::grouped);
        let Scratch { dense, touched, seen, rows: indices, undo, gauges } = scratch;
        let mut record = RecordScratch { dense, touched, seen };
        let rows = &mut self.rows;
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for (i, rec) in batch.records().enumerate() {
                #[cfg(debug_assertions)]
                debug_fault::maybe_panic(i, batch.len());
                let row = indices[i];
                if row == SKIP {
                    continue;
                }
                let values = &mut rows[row as usize].values;
                undo.extend_from_slice(values);
                let saved = &undo[undo.len() - values.len()..];
                let sink = if grouped { Some((&mut *gauges, row)) } else { None };
                apply_record(def, values, saved, &rec, &mut record, sink);
            }
            if grouped {
                combine_gauges(def, rows, gauges);
            }
        }));
        if let Err(panic) = applied {
            let slots = def.slots;
            let saved = undo.len() / slots.max(1);
            let merged: Vec<u32> = indices.iter().copied().filter(|r| *r != SKIP).take(saved).collect();
            for (i, row) in merged.iter().enumerate().rev() {
                rows[*row as usize].values.copy_from_slice(&undo[i * slots..(i + 1) * slots]);
            }
            scratch.reset();
            std::panic::resume_unwind(panic);
        }
        undo.clear();
        gauges.clear();
    }

    /// What the rows would cost in each datacenter mode, in rows; see [`Footprint`].
    /// `keyed` says what the rows' datacenter key is; `group_of` gives a POP code's group.
    pub fn footprint(&self, keyed: Keyed, group_of: &dyn Fn(&str) -> u32) -> Footprint {
        let mut entities: Vec<*const u8> = self.rows.iter().map(|r| r.entity.as_ptr()).collect();
        entities.sort_unstable();
        entities.dedup();
        let aggregate = entities.len();
        match keyed {
            Keyed::Aggregate => Footprint { datacenter: None, group: None, aggregate: self.rows.len() },
            Keyed::Datacenter => {
                let mut groups: Vec<(u32, *const u8)> =
                    self.rows.iter().map(|r| (group_of(&r.dc), r.entity.as_ptr())).collect();
                groups.sort_unstable();
                groups.dedup();
                Footprint { datacenter: Some(self.rows.len()), group: Some(groups.len()), aggregate }
            }
            Keyed::Group => {
                let pops = self.rows.iter().map(|r| r.pops.iter().map(|w| w.count_ones() as usize).sum::<usize>());
                Footprint { datacenter: Some(pops.sum()), group: Some(self.rows.len()), aggregate }
            }
        }
    }

    /// The index of the row `(dc, entity)`, if it exists.
    fn find(&self, dc: &str, entity: &str) -> Option<usize> {
        self.rows.binary_search_by(|r| (&*r.dc, &*r.entity).cmp(&(dc, entity))).ok()
    }

    /// The index of the row `(dc, entity)`, created (all zeros) when missing; true when it was.
    fn row_index(&mut self, ctx: &MergeContext<'_>, dc: &str, entity: &str) -> (usize, bool) {
        let found = self.rows.binary_search_by(|r| (&*r.dc, &*r.entity).cmp(&(dc, entity)));
        match found {
            Ok(i) => (i, false),
            Err(i) => {
                let zeros = vec![0.0; ctx.def.slots].into_boxed_slice();
                self.rows.insert(i, new_row(ctx.names, ctx.entity_label, dc, entity, zeros, ctx.now));
                (i, true)
            }
        }
    }
}

/// What a table's rows are keyed by, for [`StreamTable::footprint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyed {
    /// POP codes (the default).
    Datacenter,
    /// Datacenter groups (`-datacenter-group`).
    Group,
    /// The one `aggregate` row (`-aggregate-only`).
    Aggregate,
}

/// Rows one table needs in each datacenter mode for the data it holds: per POP, per group,
/// and aggregate (one per origin/domain, or one). `None` where the rows kept cannot tell
/// (an aggregate row has no POPs). Per POP under grouping counts each (POP, entity) that fed
/// a group row; a POP whose group changed counts once under each group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// One row per (POP, entity).
    pub datacenter: Option<usize>,
    /// One row per (group, entity).
    pub group: Option<usize>,
    /// One row per entity.
    pub aggregate: usize,
}

/// The datacenter key of record `i`'s row, `None` when the record is dropped.
#[inline]
fn target<'a>(places: Option<&'a Places>, i: usize, dc: &'a str) -> Option<&'a str> {
    match places {
        Some(p) => p.target(i, dc),
        None => Some(dc),
    }
}

/// Sets bit `i`, growing the set as needed; true when it was not set.
fn set_bit(bits: &mut Box<[u64]>, i: u16) -> bool {
    let (word, bit) = (usize::from(i) / 64, 1u64 << (i % 64));
    if word >= bits.len() {
        let mut grown = vec![0u64; word + 1];
        grown[..bits.len()].copy_from_slice(bits);
        *bits = grown.into_boxed_slice();
    }
    let new = bits[word] & bit == 0;
    bits[word] |= bit;
    new
}

/// Writes each gauge of a row several POPs fed: the mean of the records' values weighted by
/// their weight fields (the counts the ratio is made of), so the group's ratio is the ratio
/// of its summed counts; the plain mean when no record carries weight. A gauge no record had
/// a valid value for keeps its value.
fn combine_gauges(def: &StreamDef, rows: &mut [Row], gauges: &mut [GaugeObs]) {
    gauges.sort_unstable_by_key(|g| (g.row, g.op));
    for run in gauges.chunk_by(|a, b| a.row == b.row && a.op == b.op) {
        let Some(RecordOp::Set { slot, .. }) = def.record_ops.get(usize::from(run[0].op)) else { continue };
        let weight: f64 = run.iter().map(|g| g.weight).sum();
        let value = if weight > 0.0 {
            run.iter().map(|g| g.value * g.weight).sum::<f64>() / weight
        } else {
            run.iter().map(|g| g.value).sum::<f64>() / run.len() as f64
        };
        rows[run[0].row as usize].values[*slot] = value;
    }
}

/// What [`StreamTable::restore`] needs besides the rows.
#[derive(Clone, Copy, Debug)]
pub struct RestoreContext<'a> {
    /// Where row names are interned.
    pub names: &'a Interner,
    /// `origin` or `domain`, or none for the real-time stream.
    pub entity_label: Option<&'a str>,
    /// Length of a row of this stream.
    pub slots: usize,
}

/// A row with its names interned and its labels escaped once.
fn new_row(names: &Interner, entity_label: Option<&str>, dc: &str, entity: &str, values: Box<[f64]>, seen: u32) -> Row {
    let mut labels = String::with_capacity(32);
    push_label(&mut labels, "datacenter", dc);
    if let Some(name) = entity_label {
        labels.push(',');
        push_label(&mut labels, name, entity);
    }
    Row {
        dc: names.intern(dc),
        entity: names.intern(entity),
        labels: labels.into_boxed_str(),
        values,
        seen,
        pops: Box::default(),
    }
}

/// The per-record parts of [`Scratch`].
struct RecordScratch<'a> {
    dense: &'a mut Vec<f64>,
    touched: &'a mut Vec<u16>,
    seen: &'a mut Vec<u64>,
}

/// Test-only fault injection, compiled into debug builds only:
/// `FASTLY_EXPORTER_DEBUG_MERGE_PANICS=<n>` makes the next n merges of more than one record
/// panic halfway through, so end-to-end tests can prove a half-applied batch is undone.
#[cfg(debug_assertions)]
mod debug_fault {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    pub(super) fn maybe_panic(record: usize, records: usize) {
        static LEFT: OnceLock<AtomicU64> = OnceLock::new();
        if records < 2 || record != records / 2 {
            return;
        }
        let left = LEFT.get_or_init(|| {
            let n = std::env::var("FASTLY_EXPORTER_DEBUG_MERGE_PANICS").ok().and_then(|v| v.parse().ok());
            AtomicU64::new(n.unwrap_or(0))
        });
        if left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            panic!("injected test panic after merging {record} of {records} records");
        }
    }
}

/// Applies one record to one row, in the order the Go exporter does per datacenter. With a
/// gauge sink (a row several POPs feed), gauge values are collected for [`combine_gauges`]
/// instead of set. `saved` is the row as it was before (the undo journal's copy).
fn apply_record(
    def: &StreamDef,
    row: &mut [f64],
    saved: &[f64],
    rec: &RecordView<'_>,
    s: &mut RecordScratch<'_>,
    mut gauges: Option<(&mut Vec<GaugeObs>, u32)>,
) {
    let once = apply_once(def, row, rec, s);
    if !once {
        clear(rec, s);
        row.copy_from_slice(saved);
        apply_general(def, row, rec, s);
    }
    record_ops(def, row, s, &mut gauges);
    clear(rec, s);
}

/// Back to all clear after either path: every field either wrote to `dense`, `seen` or
/// `touched` is one of the record's entries.
fn clear(rec: &RecordView<'_>, s: &mut RecordScratch<'_>) {
    for e in rec.entries {
        if let Some(d) = s.dense.get_mut(e.field as usize) {
            *d = 0.0;
        }
    }
    s.seen.fill(0);
    s.touched.clear();
}

/// The record's values into their targets in one pass, when each number field comes at most
/// once, as in every answer the API writes; false (the row and `dense` partly written) at the
/// first field that comes twice, for [`apply_general`]. Each target slot gets its additions
/// in the order the general path makes them: map fields (histogram buckets) and number fields
/// feed different slots, and number fields come in the order of their first appearance.
#[inline(always)]
fn apply_once(def: &StreamDef, row: &mut [f64], rec: &RecordView<'_>, s: &mut RecordScratch<'_>) -> bool {
    for e in rec.entries {
        let f = e.field as usize;
        match def.field_kinds[f] {
            FieldKind::Number => {
                if mark_seen(s.seen, f) {
                    return false;
                }
                let v = e.value;
                s.dense[f] = v;
                // NaN marks a field present but invalid (see `Batch::push_invalid`): it adds
                // nothing.
                if !v.is_nan() {
                    match def.direct.get(f) {
                        Some(&slot) if slot != NOT_DIRECT => row[slot as usize] += v,
                        _ => add_number(def, row, f, v),
                    }
                }
            }
            FieldKind::Map => add_map(def, row, f, e.key, e.value),
        }
    }
    true
}

/// The general case: a field that comes twice counts only with its last value (as a JSON
/// object's duplicate key does in serde), so values go to `dense` first and to their targets
/// after.
fn apply_general(def: &StreamDef, row: &mut [f64], rec: &RecordView<'_>, s: &mut RecordScratch<'_>) {
    for e in rec.entries {
        let f = e.field as usize;
        match def.field_kinds[f] {
            FieldKind::Number => {
                if !mark_seen(s.seen, f) {
                    s.touched.push(e.field);
                }
                s.dense[f] = e.value;
            }
            FieldKind::Map => add_map(def, row, f, e.key, e.value),
        }
    }
    for &f in s.touched.iter() {
        let v = s.dense[f as usize];
        if !v.is_nan() {
            add_number(def, row, f as usize, v);
        }
    }
}

/// Marks field `f` seen in the record; whether it was already.
#[inline(always)]
fn mark_seen(seen: &mut [u64], f: usize) -> bool {
    let (word, bit) = (f / 64, 1u64 << (f % 64));
    let was = seen[word] & bit != 0;
    seen[word] |= bit;
    was
}

/// A number field's value into its targets.
#[inline(always)]
fn add_number(def: &StreamDef, row: &mut [f64], f: usize, v: f64) {
    for t in &def.targets[f] {
        match *t {
            Target::Add { slot, scale } => row[slot] += v * scale,
            Target::Observe { bucket, sum, at } => {
                row[bucket] += v;
                row[sum] += v * at;
            }
            Target::ObserveMap { .. } => {}
        }
    }
}

/// One `"<key>": count` entry of a map field into its histogram.
#[inline(always)]
fn add_map(def: &StreamDef, row: &mut [f64], f: usize, key: f64, count: f64) {
    for t in &def.targets[f] {
        if let Target::ObserveMap { first, sum, scale, bounds } = t {
            let at = key * scale;
            row[first + bucket_index(bounds, at)] += count;
            row[*sum] += count * at;
        }
    }
}

/// The operations that read several fields of the record (or run when one is absent).
fn record_ops(def: &StreamDef, row: &mut [f64], s: &RecordScratch<'_>, gauges: &mut Option<(&mut Vec<GaugeObs>, u32)>) {
    for (i, op) in def.record_ops.iter().enumerate() {
        match op {
            RecordOp::Set { slot, field, weight } => {
                let v = s.dense[*field as usize];
                // An invalid value leaves the gauge as it was; an absent one sets it to 0.
                if v.is_nan() {
                    continue;
                }
                match gauges.as_mut() {
                    Some((sink, at)) => {
                        // An invalid weight counts as none (NaN is not > 0).
                        let w = weight.iter().map(|f| s.dense[*f as usize]).filter(|w| *w > 0.0).sum();
                        sink.push(GaugeObs { row: *at, op: i as u16, value: v, weight: w });
                    }
                    None => row[*slot] = v,
                }
            }
            RecordOp::GuardedDiff { slot, plus, minus } => {
                let sub: f64 = minus.iter().map(|m| s.dense[*m as usize]).sum();
                let plus = s.dense[*plus as usize];
                // False when either side is invalid (NaN): nothing is added.
                if plus >= sub {
                    row[*slot] += plus - sub;
                }
            }
        }
    }
}
