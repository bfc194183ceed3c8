//! Where each datacenter's data goes: its own row, its group's row, or nowhere.
//!
//! The datacenter filters (`-datacenter-allowlist`/`-blocklist`, on POP codes) and
//! `-datacenter-group` are one step between parsing and merging: the parser stays a plain
//! reader of the API's shape, and the table only learns which row each record adds to.
//! [`Placement::place`] runs before the poller takes the table's write lock; it costs one hash
//! lookup per datacenter of an answer (the records of one datacenter's origins or domains are
//! contiguous and share it).
//!
//! The group of a POP comes from `GET /datacenters` ([`Placement::learn`]). It is sticky: a POP
//! keeps its last known group when a later list leaves it out, so a flapping list cannot move
//! its data back and forth. A POP no list has named yet goes to the `unknown` row. When its
//! group becomes known, its *new* data goes to the group; what `unknown` already counted stays
//! there. Moving it would make `unknown` go down (a counter reset to Prometheus) and the group
//! jump; leaving it keeps every counter monotonic and the sum over all rows exact.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::util::filter::Filter;

use super::batch::Batch;

/// How the datacenter label of stream rows is keyed: the one setting a reader of the rows
/// (render, the state file) must know to interpret a row's `datacenter` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// One row per POP code (the default, as the Go exporter).
    Datacenter,
    /// One row per datacenter group (`-datacenter-group`): `Europe`, `North America`, …
    Group,
}

/// The row of POPs whose group is not known (yet).
pub const UNKNOWN_GROUP: &str = "unknown";

/// Most POP codes remembered (Fastly has about a hundred). An answer naming more codes than
/// this cannot grow the map: extra codes are placed without being remembered (their filter
/// verdict is recomputed per answer, and they count neither in the POP states nor in the
/// per-POP series estimate).
const MAX_POPS: usize = 2048;

/// Longest group label, in characters; longer names are cut (with `…`).
const MAX_GROUP_LABEL: usize = 64;

/// What is known about one POP code.
#[derive(Clone, Copy, Debug)]
struct Pop {
    /// Stable small number, for the per-row sets of contributing POPs.
    index: u16,
    /// Passes the datacenter filters.
    allowed: bool,
    /// Index into [`Routes::groups`]; 0 is [`UNKNOWN_GROUP`].
    group: u32,
    /// A datacenter list named it.
    listed: bool,
    /// An answer had data for it.
    seen: bool,
}

/// A snapshot of the POP → row mapping, replaced whole when it changes (copy on write), so
/// placing an answer takes one read lock and no writer waits on a reader for long.
#[derive(Debug)]
pub struct Routes {
    pops: HashMap<Box<str>, Pop>,
    /// Group labels, rendered once; index 0 is `unknown`. Never shrinks (bounded by the POPs).
    groups: Vec<Arc<str>>,
    /// Bumped whenever a POP's group changes.
    generation: u64,
}

impl Default for Routes {
    fn default() -> Routes {
        Routes { pops: HashMap::new(), groups: vec![Arc::from(UNKNOWN_GROUP)], generation: 0 }
    }
}

impl Routes {
    /// The group index of a POP code (0: unknown).
    pub fn group_of(&self, code: &str) -> u32 {
        self.pops.get(code).map_or(0, |p| p.group)
    }

    /// Changes whenever a POP moves to another group (census caches depend on it).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn group_index(&mut self, label: &str) -> u32 {
        match self.groups.iter().position(|g| &**g == label) {
            Some(i) => i as u32,
            None => {
                self.groups.push(Arc::from(label));
                (self.groups.len() - 1) as u32
            }
        }
    }

    fn insert(&mut self, code: &str, pop: Pop) -> bool {
        if self.pops.len() >= MAX_POPS {
            return false;
        }
        self.pops.insert(Box::from(code), pop);
        true
    }
}

/// POP codes seen in answers, by state (the `fastly_exporter_datacenters` self-metric).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PopStates {
    /// Exported and in the datacenter list.
    pub listed: usize,
    /// Exported, not in the list (the `unknown` row when grouping).
    pub unlisted: usize,
    /// Dropped by the datacenter filters.
    pub filtered: usize,
}

/// The datacenter filters, the grouping mode and the POP → group map, shared by the pollers
/// (read) and the main thread (which learns the datacenter list).
#[derive(Debug)]
pub struct Placement {
    grouping: Grouping,
    filter: Filter,
    filtered: bool,
    routes: RwLock<Arc<Routes>>,
}

/// Where one record goes.
#[derive(Clone, Copy, Debug)]
struct Place {
    /// [`SKIP`], [`OWN`] or a group index.
    to: u32,
    /// The POP's index, or [`NO_POP`].
    pop: u16,
}

/// Dropped by the filters.
const SKIP: u32 = u32::MAX;
/// The POP's own row.
const OWN: u32 = u32::MAX - 1;
/// A POP without an index (beyond [`MAX_POPS`]).
const NO_POP: u16 = u16::MAX;

/// The placement of every record of one batch, filled by [`Placement::place`]. Reused across
/// polls (one per parse buffer set).
#[derive(Debug, Default)]
pub struct Places {
    targets: Vec<Place>,
    routes: Option<Arc<Routes>>,
    grouped: bool,
}

impl Places {
    /// Forgets the last batch's placement.
    pub fn clear(&mut self) {
        self.targets.clear();
        self.routes = None;
        self.grouped = false;
    }

    /// True when several POPs may share a row (their gauges are then combined).
    pub fn grouped(&self) -> bool {
        self.grouped
    }

    /// The datacenter key of the row record `i` (named `dc` in the batch) adds to; `None` when
    /// the filters drop it.
    #[inline]
    pub fn target<'a>(&'a self, i: usize, dc: &'a str) -> Option<&'a str> {
        let Some(p) = self.targets.get(i) else { return Some(dc) };
        match p.to {
            SKIP => None,
            OWN => Some(dc),
            g => self.routes.as_ref().and_then(|r| r.groups.get(g as usize)).map(|s| &**s),
        }
    }

    /// The index of record `i`'s POP when it goes to a group row (for the set of POPs that fed
    /// that row).
    #[inline]
    pub fn grouped_pop(&self, i: usize) -> Option<u16> {
        self.targets.get(i).filter(|p| p.to != SKIP && p.to != OWN && p.pop != NO_POP).map(|p| p.pop)
    }
}

impl Placement {
    /// A placement for the configured mode and POP filters.
    pub fn new(grouping: Grouping, filter: Filter) -> Placement {
        let filtered = !filter.is_empty();
        Placement { grouping, filter, filtered, routes: RwLock::default() }
    }

    /// How stream rows are keyed.
    pub fn grouping(&self) -> Grouping {
        self.grouping
    }

    /// False when every record goes to its own POP's row (no grouping, no filter): the
    /// poller then skips [`Placement::place`] altogether.
    pub fn is_active(&self) -> bool {
        self.grouping == Grouping::Group || self.filtered
    }

    /// True when the datacenter filters let `code` through (`fastly_rt_datacenter_info` lists
    /// only those POPs, so it names exactly the POPs whose data is exported).
    pub fn permits(&self, code: &str) -> bool {
        self.filter.permits(code)
    }

    /// The current mapping.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes the groups of a datacenter list (`(code, group)` pairs). Returns true when the
    /// mapping changed (a POP got or changed its group): its data goes to the new row from the
    /// next answer on.
    pub fn learn<'a>(&self, list: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
        // Under the write lock for the whole copy, so POPs a poller remembers meanwhile are
        // not lost.
        let mut guard = self.routes.write().unwrap_or_else(|p| p.into_inner());
        let mut next = Routes { pops: guard.pops.clone(), groups: guard.groups.clone(), generation: guard.generation };
        let mut changed = false;
        for (code, group) in list {
            let label = group_label(group);
            let group = if label == UNKNOWN_GROUP { 0 } else { next.group_index(&label) };
            match next.pops.get_mut(code) {
                Some(p) => {
                    changed |= p.group != group;
                    p.group = group;
                    p.listed = true;
                }
                None => {
                    let index = next.pops.len() as u16;
                    let pop = Pop { index, allowed: self.filter.permits(code), group, listed: true, seen: false };
                    changed |= next.insert(code, pop) && group != 0;
                }
            }
        }
        next.generation += u64::from(changed);
        *guard = Arc::new(next);
        changed
    }

    /// Fills `out` with the row of every record of `batch`. POP codes seen for the first time
    /// are remembered (with their filter verdict) under a short write lock, once.
    pub fn place(&self, batch: &Batch, out: &mut Places) {
        let routes = self.routes();
        if !self.place_with(&routes, batch, out) {
            let routes = self.remember(batch);
            self.place_with(&routes, batch, out);
        }
    }

    /// Places every record with `routes`; false when a POP of the batch has not been seen
    /// before (and there is room to remember it).
    fn place_with(&self, routes: &Arc<Routes>, batch: &Batch, out: &mut Places) -> bool {
        out.clear();
        let full = routes.pops.len() >= MAX_POPS;
        let mut all_seen = true;
        let mut last: Option<(&str, Place)> = None;
        for rec in batch.records() {
            let place = match last {
                Some((dc, p)) if dc == rec.dc => p,
                _ => {
                    let known = routes.pops.get(rec.dc);
                    all_seen &= full || known.is_some_and(|p| p.seen);
                    self.place_one(known, rec.dc)
                }
            };
            last = Some((rec.dc, place));
            out.targets.push(place);
        }
        out.routes = Some(routes.clone());
        out.grouped = self.grouping == Grouping::Group;
        all_seen
    }

    fn place_one(&self, known: Option<&Pop>, code: &str) -> Place {
        let (allowed, group, pop) = match known {
            Some(p) => (p.allowed, p.group, p.index),
            None => (self.filter.permits(code), 0, NO_POP),
        };
        let to = match (allowed, self.grouping) {
            (false, _) => SKIP,
            (true, Grouping::Datacenter) => OWN,
            (true, Grouping::Group) => group,
        };
        Place { to, pop }
    }

    /// Marks the batch's POPs as seen, adding the new ones; returns the new snapshot.
    #[cold]
    fn remember(&self, batch: &Batch) -> Arc<Routes> {
        let mut guard = self.routes.write().unwrap_or_else(|p| p.into_inner());
        let mut next = Routes { pops: guard.pops.clone(), groups: guard.groups.clone(), generation: guard.generation };
        let mut last: Option<&str> = None;
        for rec in batch.records() {
            if last.replace(rec.dc) == Some(rec.dc) {
                continue;
            }
            match next.pops.get_mut(rec.dc) {
                Some(p) => p.seen = true,
                None => {
                    let index = next.pops.len() as u16;
                    let pop = Pop { index, allowed: self.filter.permits(rec.dc), group: 0, listed: false, seen: true };
                    next.insert(rec.dc, pop);
                }
            }
        }
        let next = Arc::new(next);
        *guard = next.clone();
        next
    }

    /// POP codes seen in answers so far, by state.
    pub fn states(&self) -> PopStates {
        let routes = self.routes();
        let mut s = PopStates::default();
        for p in routes.pops.values().filter(|p| p.seen) {
            match (p.allowed, p.listed) {
                (false, _) => s.filtered += 1,
                (true, true) => s.listed += 1,
                (true, false) => s.unlisted += 1,
            }
        }
        s
    }
}

/// The `datacenter` label value of a group name from `/datacenters`, as exported under
/// `-datacenter-group` (and as `fastly_rt_datacenter_info`'s `group` label then shows it, so
/// the two join). Fastly's names (`Europe`, `Asia/Pacific`, …) pass unchanged; the exposition
/// escapes quotes and backslashes. Only a name that would make a confusing series is changed:
/// control characters become spaces, runs of whitespace one space, leading and trailing
/// whitespace is dropped, a name longer than 64 characters is cut (ending in `…`), and a name
/// left empty is `unknown`.
pub fn group_label(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for word in raw.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > MAX_GROUP_LABEL {
        out = out.chars().take(MAX_GROUP_LABEL - 1).collect::<String>().trim_end().to_string();
        out.push('…');
    }
    if out.is_empty() { UNKNOWN_GROUP.to_string() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(allow: &[&str], block: &[&str]) -> Filter {
        let re = |v: &[&str]| v.iter().map(|s| regex::Regex::new(s).unwrap()).collect();
        Filter::new(re(allow), re(block))
    }

    fn batch(dcs: &[&str]) -> Batch {
        let mut b = Batch::default();
        for dc in dcs {
            let d = b.add_name(dc);
            let e = b.add_name("");
            b.begin_record(d, e);
            b.end_record();
        }
        b
    }

    fn targets(p: &Placement, dcs: &[&str]) -> Vec<Option<String>> {
        let b = batch(dcs);
        let mut out = Places::default();
        p.place(&b, &mut out);
        b.records().enumerate().map(|(i, r)| out.target(i, r.dc).map(str::to_string)).collect()
    }

    #[test]
    fn groups_filters_and_unknown() {
        let p = Placement::new(Grouping::Group, filter(&[], &["^SYD$"]));
        assert!(p.is_active());
        p.learn([("AMS", "Europe"), ("FRA", "Europe"), ("SYD", "Asia/Pacific")]);
        let got = targets(&p, &["AMS", "FRA", "FRA", "SYD", "NEW"]);
        let want = [Some("Europe"), Some("Europe"), Some("Europe"), None, Some("unknown")];
        assert_eq!(got, want.map(|w| w.map(str::to_string)));
        assert_eq!(p.states(), PopStates { listed: 2, unlisted: 1, filtered: 1 });
        // NEW becomes known: its later data goes to its group; the list may drop it again
        // without moving it back.
        assert!(p.learn([("NEW", "Africa")]));
        assert_eq!(targets(&p, &["NEW", "AMS"]), [Some("Africa".to_string()), Some("Europe".to_string())]);
        assert!(!p.learn([("AMS", "Europe")]));
        assert_eq!(targets(&p, &["NEW"]), [Some("Africa".to_string())]);
        assert_eq!(p.states(), PopStates { listed: 3, unlisted: 0, filtered: 1 });
    }

    #[test]
    fn per_datacenter_with_filters_keeps_own_rows() {
        let p = Placement::new(Grouping::Datacenter, filter(&["^A", "^F"], &["^FRA$"]));
        let got = targets(&p, &["AMS", "FRA", "FCO", "LHR"]);
        assert_eq!(got, [Some("AMS".into()), None, Some("FCO".into()), None]);
        assert!(!Placement::new(Grouping::Datacenter, Filter::default()).is_active());
    }

    #[test]
    fn remembered_pops_are_bounded() {
        let p = Placement::new(Grouping::Group, filter(&["^P"], &[]));
        let codes: Vec<String> = (0..MAX_POPS + 10).map(|i| format!("P{i}")).collect();
        let refs: Vec<&str> = codes.iter().map(String::as_str).collect();
        let got = targets(&p, &refs);
        assert!(got.iter().all(|t| t.as_deref() == Some("unknown")));
        assert_eq!(p.routes().pops.len(), MAX_POPS);
        assert_eq!(targets(&p, &["X1"]), [None], "the filter still applies beyond the cap");
    }

    #[test]
    fn group_labels() {
        assert_eq!(group_label("Europe"), "Europe");
        assert_eq!(group_label("Asia/Pacific"), "Asia/Pacific");
        assert_eq!(group_label("  North \t America\n"), "North America");
        assert_eq!(group_label("a\u{0}b"), "a b");
        assert_eq!(group_label(""), "unknown");
        assert_eq!(group_label(" \u{7} "), "unknown");
        let long = group_label(&"x".repeat(100));
        assert_eq!(long.chars().count(), 64);
        assert!(long.ends_with('…'));
        assert_eq!(group_label("Quote\"Back\\"), "Quote\"Back\\", "escaped by the exposition, not here");
    }
}
