//! Streaming Prometheus text rendering of the metric table.
//!
//! A [`Scrape`] hands out the exposition a chunk at a time: it formats the next
//! (family, service) units into the caller's buffer only when asked. A 300 MB scrape therefore never
//! exists in memory at once, and each service's table lock is held only while that service's
//! rows of one family are formatted. Families are contiguous and sorted by name (as
//! client_golang sorts them); label blocks are pre-rendered per row, per service and per
//! series, so the hot loop is memcpy plus number formatting.

use std::sync::Arc;

use crate::catalog::{AccountFamily, Family, Kind, Scope, Selected, Selection, ServiceFamily, Stream};
use crate::store::{AccountSnapshot, PollResult, Service, ServiceMeta};
use crate::util::exposition::{escape_help, push_label, put, write_f64};

/// How much text a `read` call formats before handing it over.
const CHUNK: usize = 64 * 1024;

/// Everything about the output that depends only on configuration, computed once at start.
#[derive(Debug)]
pub struct Plan {
    families: Vec<PlannedFamily>,
    /// Sample lines one row of each stream renders (see [`Plan::series_per_row`]).
    series_per_row: [u64; 3],
}

#[derive(Debug)]
struct PlannedFamily {
    fam: &'static Family,
    /// Full name, then `_bucket{`-style prefixes for histograms.
    name: String,
    header: Vec<u8>,
    series: Vec<PlannedSeries>,
    /// Pre-rendered `,le="…"} ` suffixes, one per bucket incl. `+Inf` (histograms only).
    le: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct PlannedSeries {
    slot: usize,
    /// Extra labels that sort between the row's labels and `service_id` (`,http_version="1"`).
    mid: Vec<u8>,
    /// Extra labels that sort after `service_name` (`,status_code="200"`).
    end: Vec<u8>,
}

impl Plan {
    /// Pre-renders what the selection exports: headers, extra-label fragments, `le` suffixes.
    /// The exporter's own families are left to the self-metrics tail (plain `/metrics` only).
    pub fn new(selection: &Selection) -> Plan {
        let mut families = Vec::new();
        for Selected { family: fam, name } in selection.families() {
            if matches!(fam.scope, Scope::Exporter(_)) {
                continue;
            }
            let help = escape_help(&fam.help.replace("{program}", selection.program()));
            let header = format!("# HELP {name} {help}\n# TYPE {name} {}\n", fam.kind.as_str()).into_bytes();
            let series = match fam.scope {
                Scope::Stream(stream) => fam.series.iter().map(|s| plan_series(stream, s)).collect(),
                _ => Vec::new(),
            };
            let le = fam
                .buckets
                .iter()
                .map(|b| {
                    let mut v = b",le=\"".to_vec();
                    write_f64(&mut v, *b);
                    v.extend_from_slice(b"\"} ");
                    v
                })
                .chain(std::iter::once(b",le=\"+Inf\"} ".to_vec()))
                .collect();
            families.push(PlannedFamily { fam, name: name.clone(), header, series, le });
        }
        let mut series_per_row = [0; 3];
        for pf in &families {
            if let Scope::Stream(stream) = pf.fam.scope {
                let lines = if pf.fam.kind == Kind::Histogram { pf.le.len() + 2 } else { 1 };
                series_per_row[stream.index()] += (pf.series.len() * lines) as u64;
            }
        }
        Plan { families, series_per_row }
    }

    /// Sample lines each row of `stream` renders: one per series, and for a histogram its
    /// buckets, `+Inf`, `_sum` and `_count`. A stream's series are its rows times this.
    pub fn series_per_row(&self, stream: Stream) -> u64 {
        self.series_per_row[stream.index()]
    }

    /// Sample lines of the per-service and account families a full scrape of `services`
    /// renders (stream rows aside, see [`Plan::series_per_row`]), by the same rules as the
    /// renderer below.
    pub fn other_series(&self, services: &[Arc<Service>], acc: &AccountSnapshot) -> u64 {
        let mut n = 0;
        for pf in &self.families {
            n += match pf.fam.scope {
                Scope::Stream(_) | Scope::Exporter(_) => 0,
                Scope::Service(ServiceFamily::ServiceInfo) => services.len(),
                Scope::Service(ServiceFamily::LastSuccessfulResponse) => {
                    services.iter().filter(|s| s.last_success() > 0).count()
                }
                Scope::Service(ServiceFamily::RealtimeApiRequests) => {
                    services.iter().map(|s| PollResult::ALL.iter().filter(|r| s.result_count(**r) > 0).count()).sum()
                }
                Scope::Account(AccountFamily::BuildInfo) => 1,
                Scope::Account(AccountFamily::DatacenterInfo) => acc.datacenters.len(),
                Scope::Account(AccountFamily::TokenExpiration) => {
                    usize::from(acc.token.as_ref().is_some_and(|t| t.expires_at.is_some()))
                }
                Scope::Account(AccountFamily::CertExpiry) => acc.certificates.len(),
                Scope::Account(AccountFamily::DictionaryItemCount | AccountFamily::DictionaryLastUpdated) => {
                    services.iter().map(|s| acc.dictionaries.get(&*s.id).map_or(0, Vec::len)).sum()
                }
            } as u64;
        }
        n
    }
}

fn plan_series(stream: Stream, s: &crate::catalog::Series) -> PlannedSeries {
    let last_row_label = stream.entity_label().unwrap_or("datacenter");
    let mut mid = String::new();
    let mut end = String::new();
    for (k, v) in &s.labels {
        let out = if *k > last_row_label && *k < "service_id" { &mut mid } else { &mut end };
        out.push(',');
        push_label(out, k, v);
    }
    PlannedSeries { slot: s.slot, mid: mid.into_bytes(), end: end.into_bytes() }
}

/// A scrape in progress: a reader producing the exposition for a set of services.
///
/// It formats at most about `CHUNK` bytes per call, whatever the size of one (family, service)
/// unit: a Domain Inspector service with thousands of domains has one unit of hundreds of MB.
/// Inside a stream unit it resumes after the key of the last row it wrote (rows are sorted by
/// key and only ever inserted), so no table lock is held between calls, and rows inserted
/// meanwhile are neither repeated nor half-written.
pub struct Scrape {
    plan: Arc<Plan>,
    services: Vec<(Arc<Service>, Arc<ServiceMeta>)>,
    account: Option<Arc<AccountSnapshot>>,
    targeted: bool,
    tail: Vec<u8>,
    fam: usize,
    svc: usize,
    header_done: bool,
    /// Where the current unit resumes (see [`Resume`]).
    resume: Resume,
}

/// The position inside the current unit.
#[derive(Clone, Debug, Default)]
enum Resume {
    /// At its start.
    #[default]
    Start,
    /// After the row with this (datacenter, entity) key.
    AfterRow(Arc<str>, Arc<str>),
    /// At this item of an account family (for dictionaries: service index and dictionary
    /// index within it).
    Item(usize, usize),
}

impl Scrape {
    /// Starts a scrape over `services` (all of them, or one for `?target=`). `account` carries
    /// the account-wide families; a `targeted` scrape keeps only the per-service ones
    /// (dictionaries) and `build_info`. `tail` is appended verbatim at the end (the exporter's
    /// own metrics, plain `/metrics` only).
    pub fn new(
        plan: Arc<Plan>,
        services: Vec<Arc<Service>>,
        account: Option<Arc<AccountSnapshot>>,
        targeted: bool,
        tail: Vec<u8>,
    ) -> Scrape {
        let services = services
            .into_iter()
            .map(|s| {
                let meta = s.meta();
                (s, meta)
            })
            .collect();
        Scrape { plan, services, account, targeted, tail, fam: 0, svc: 0, header_done: false, resume: Resume::Start }
    }

    /// Renders the whole scrape into memory (tests and small outputs).
    pub fn into_string(mut self) -> String {
        let mut out = Vec::new();
        while self.next_chunk(&mut out) {}
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Appends the next part of the exposition to `out`: at least `CHUNK` bytes unless the
    /// scrape ends, and at most `CHUNK` plus one row of one family (a few KB). Returns false
    /// once everything has been written.
    pub fn next_chunk(&mut self, out: &mut Vec<u8>) -> bool {
        let limit = out.len() + CHUNK;
        while out.len() < limit {
            let Some(pf) = self.plan.families.get(self.fam) else {
                out.extend_from_slice(&self.tail);
                return false;
            };
            let start = out.len();
            let unit_done = match pf.fam.scope {
                Scope::Account(id) => match &self.account {
                    Some(acc) => {
                        render_account(pf, id, acc, &self.services, self.targeted, &mut self.resume, out, limit)
                    }
                    None => true,
                },
                _ => match self.services.get(self.svc) {
                    Some((svc, meta)) => render_unit(pf, svc, meta, &mut self.resume, out, limit),
                    None => {
                        self.next_family();
                        continue;
                    }
                },
            };
            if out.len() > start && !self.header_done {
                out.splice(start..start, pf.header.iter().copied());
                self.header_done = true;
            }
            if unit_done {
                self.resume = Resume::Start;
                match pf.fam.scope {
                    Scope::Account(_) => self.next_family(),
                    _ => self.svc += 1,
                }
            }
        }
        true
    }

    fn next_family(&mut self) {
        self.fam += 1;
        self.svc = 0;
        self.header_done = false;
        self.resume = Resume::Start;
    }
}

/// Formats one family for one service, from `resume` on, until `out` reaches `limit`.
/// Returns true when the unit is complete; otherwise `resume` says where to go on.
fn render_unit(
    pf: &PlannedFamily,
    svc: &Service,
    meta: &ServiceMeta,
    resume: &mut Resume,
    out: &mut Vec<u8>,
    limit: usize,
) -> bool {
    let name = pf.name.as_bytes();
    match pf.fam.scope {
        Scope::Stream(stream) => {
            let table = svc.table(stream);
            // A restored stream still catching up may hold less than was served before a
            // crash: it stays out of the exposition until it is current.
            if table.hidden() {
                return true;
            }
            let rows = table.rows();
            let first = match resume {
                Resume::AfterRow(dc, entity) => rows.partition_point(|r| (&*r.dc, &*r.entity) <= (&**dc, &**entity)),
                _ => 0,
            };
            for row in &rows[first..] {
                for s in &pf.series {
                    if pf.fam.kind == Kind::Histogram {
                        render_histogram(pf, s, row.labels.as_bytes(), meta, &row.values, out);
                        continue;
                    }
                    put(out, name);
                    out.push(b'{');
                    put(out, row.labels.as_bytes());
                    put(out, &s.mid);
                    out.push(b',');
                    put(out, meta.labels.as_bytes());
                    put(out, &s.end);
                    out.extend_from_slice(b"} ");
                    write_f64(out, row.values[s.slot]);
                    out.push(b'\n');
                }
                if out.len() >= limit {
                    *resume = Resume::AfterRow(row.dc.clone(), row.entity.clone());
                    return false;
                }
            }
            true
        }
        Scope::Service(id) => {
            render_service_family(pf, id, svc, meta, out);
            true
        }
        // Rendered per family, not per service; exporter families are the tail.
        Scope::Account(_) | Scope::Exporter(_) => true,
    }
}

fn render_histogram(
    pf: &PlannedFamily,
    s: &PlannedSeries,
    row_labels: &[u8],
    meta: &ServiceMeta,
    values: &[f64],
    out: &mut Vec<u8>,
) {
    let name = pf.name.as_bytes();
    let nb = pf.le.len();
    let labels = |out: &mut Vec<u8>| {
        out.push(b'{');
        put(out, row_labels);
        put(out, &s.mid);
        out.push(b',');
        put(out, meta.labels.as_bytes());
        put(out, &s.end);
    };
    let mut cumulative = 0.0;
    for (i, le) in pf.le.iter().enumerate() {
        cumulative += values[s.slot + i];
        put(out, name);
        out.extend_from_slice(b"_bucket");
        labels(out);
        put(out, le);
        write_f64(out, cumulative);
        out.push(b'\n');
    }
    put(out, name);
    out.extend_from_slice(b"_sum");
    labels(out);
    out.extend_from_slice(b"} ");
    write_f64(out, values[s.slot + nb]);
    out.push(b'\n');
    put(out, name);
    out.extend_from_slice(b"_count");
    labels(out);
    out.extend_from_slice(b"} ");
    write_f64(out, cumulative);
    out.push(b'\n');
}

fn render_service_family(pf: &PlannedFamily, id: ServiceFamily, svc: &Service, meta: &ServiceMeta, out: &mut Vec<u8>) {
    let name = pf.name.as_bytes();
    let labels = meta.labels.as_bytes();
    match id {
        ServiceFamily::ServiceInfo => {
            out.extend_from_slice(name);
            out.push(b'{');
            out.extend_from_slice(labels);
            let mut version = String::from(",");
            push_label(&mut version, "service_version", &meta.version);
            out.extend_from_slice(version.as_bytes());
            out.extend_from_slice(b"} 1\n");
        }
        ServiceFamily::LastSuccessfulResponse => {
            let t = svc.last_success();
            if t > 0 {
                out.extend_from_slice(name);
                out.push(b'{');
                out.extend_from_slice(labels);
                out.extend_from_slice(b"} ");
                write_f64(out, t as f64);
                out.push(b'\n');
            }
        }
        ServiceFamily::RealtimeApiRequests => {
            for r in PollResult::ALL {
                let n = svc.result_count(r);
                if n == 0 {
                    continue;
                }
                out.extend_from_slice(name);
                out.extend_from_slice(b"{result=\"");
                out.extend_from_slice(r.label().as_bytes());
                out.extend_from_slice(b"\",");
                out.extend_from_slice(labels);
                out.extend_from_slice(b"} ");
                write_f64(out, n as f64);
                out.push(b'\n');
            }
        }
    }
}

/// Formats one account-scoped family from `resume` on, until `out` reaches `limit`; returns
/// true when the family is complete. Label pairs are written in name order, as client_golang
/// sorts them.
#[allow(clippy::too_many_arguments)]
fn render_account(
    pf: &PlannedFamily,
    id: AccountFamily,
    acc: &AccountSnapshot,
    services: &[(Arc<Service>, Arc<ServiceMeta>)],
    targeted: bool,
    resume: &mut Resume,
    out: &mut Vec<u8>,
    limit: usize,
) -> bool {
    let line = |out: &mut Vec<u8>, labels: &[(&str, &str)], value: f64| {
        out.extend_from_slice(pf.name.as_bytes());
        let mut text = String::from("{");
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            push_label(&mut text, k, v);
        }
        text.push_str("} ");
        out.extend_from_slice(text.as_bytes());
        write_f64(out, value);
        out.push(b'\n');
    };
    let (mut item, mut sub) = match resume {
        Resume::Item(i, j) => (*i, *j),
        _ => (0, 0),
    };
    // Renders the items of a list from `item` on; false (and `resume` set) when `out` is full.
    macro_rules! items {
        ($list:expr, |$x:ident| $body:expr) => {{
            for (i, $x) in $list.iter().enumerate().skip(item) {
                $body;
                if out.len() >= limit {
                    *resume = Resume::Item(i + 1, 0);
                    return false;
                }
            }
            true
        }};
    }
    match id {
        AccountFamily::BuildInfo => {
            let b = &acc.build;
            line(
                out,
                &[
                    ("arch", &b.arch),
                    ("branch", &b.branch),
                    ("os", &b.os),
                    ("revision", &b.revision),
                    ("rustversion", &b.rustversion),
                    ("tags", &b.tags),
                    ("version", &b.version),
                ],
                1.0,
            );
            true
        }
        AccountFamily::DictionaryItemCount | AccountFamily::DictionaryLastUpdated => {
            let count = id == AccountFamily::DictionaryItemCount;
            while let Some((svc, meta)) = services.get(item) {
                let dicts = acc.dictionaries.get(&*svc.id).map(Vec::as_slice).unwrap_or(&[]);
                for (j, d) in dicts.iter().enumerate().skip(sub) {
                    let labels = [
                        ("dictionary_id", d.id.as_str()),
                        ("dictionary_name", &d.name),
                        ("service_id", &svc.id),
                        ("service_name", &meta.name),
                        ("version", &d.version),
                    ];
                    line(out, &labels, if count { d.item_count } else { d.last_updated });
                    if out.len() >= limit {
                        *resume = Resume::Item(item, j + 1);
                        return false;
                    }
                }
                item += 1;
                sub = 0;
            }
            true
        }
        // A targeted scrape has only the per-service account families (and build_info).
        AccountFamily::DatacenterInfo | AccountFamily::TokenExpiration | AccountFamily::CertExpiry if targeted => true,
        AccountFamily::DatacenterInfo => items!(acc.datacenters, |d| {
            let labels = [
                ("datacenter", d.code.as_str()),
                ("group", &d.group),
                ("latitude", &d.latitude),
                ("longitude", &d.longitude),
                ("name", &d.name),
            ];
            line(out, &labels, 1.0)
        }),
        AccountFamily::TokenExpiration => {
            if let Some(t) = &acc.token
                && let Some(exp) = t.expires_at
            {
                line(out, &[("token_id", &t.id), ("user_id", &t.user_id)], exp);
            }
            true
        }
        AccountFamily::CertExpiry => items!(acc.certificates, |c| {
            let labels =
                [("cn", c.cn.as_str()), ("id", &c.id), ("issuer", &c.issuer), ("name", &c.name), ("sn", &c.sn)];
            line(out, &labels, c.not_after)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::catalog;
    use crate::store::{Batch, Certificate, Datacenter, Dictionary, MergeContext, Registry, Scratch, TokenInfo};
    use crate::util::filter::Filter;

    /// Merges one record per `(datacenter, entity)` with a value in the field `key`.
    fn merge(reg: &Registry, svc: &Service, stream: Stream, key: &str, rows: &[(&str, &str)]) {
        let def = catalog().stream(stream);
        let mut b = Batch::default();
        for (dc, entity) in rows {
            let dc = b.add_name(dc);
            let entity = b.add_name(entity);
            b.begin_record(dc, entity);
            b.push(def.field(key).unwrap(), 3.0);
            b.end_record();
        }
        let ctx = MergeContext { def, entity_label: stream.entity_label(), names: reg.names(), now: 1, places: None };
        svc.table_mut(stream).merge(&ctx, &b, &mut Scratch::default());
    }

    #[test]
    fn series_counts_match_what_a_scrape_renders() {
        let selection = Selection::new("fastly", "rt", &Filter::new(Vec::new(), Vec::new()));
        let plan = Arc::new(Plan::new(&selection));
        let reg = Registry::new();
        let (a, _) = reg.upsert("A", "alpha", "1");
        let (b, _) = reg.upsert("B", "beta", "2");
        merge(&reg, &a, Stream::Realtime, "requests", &[("AMS", ""), ("LHR", "")]);
        merge(&reg, &b, Stream::Realtime, "requests", &[("AMS", "")]);
        merge(&reg, &b, Stream::Origin, "responses", &[("AMS", "o1"), ("AMS", "o2"), ("LHR", "o1")]);
        merge(&reg, &a, Stream::Domain, "requests", &[("AMS", "d1")]);
        a.mark_success(5);
        a.count_result(PollResult::Success);
        a.count_result(PollResult::NoData);
        b.count_result(PollResult::Error);
        let dc = |code: &str| Datacenter {
            code: code.into(),
            name: code.into(),
            group: "g".into(),
            latitude: "0".into(),
            longitude: "0".into(),
        };
        let dict =
            Dictionary { id: "d".into(), name: "n".into(), version: "1".into(), item_count: 2.0, last_updated: 3.0 };
        let cert = Certificate {
            cn: "c".into(),
            name: "n".into(),
            id: "i".into(),
            issuer: "x".into(),
            sn: "01".into(),
            not_after: 9.0,
        };
        let acc = AccountSnapshot {
            datacenters: vec![dc("AMS"), dc("LHR"), dc("TYO")],
            token: Some(TokenInfo { id: "t".into(), user_id: "u".into(), expires_at: Some(7.0) }),
            certificates: vec![cert],
            dictionaries: [("B".to_string(), vec![dict.clone(), dict])].into_iter().collect(),
            ..Default::default()
        };
        let services = reg.snapshot();
        let rows: u64 = services
            .iter()
            .flat_map(|s| Stream::ALL.map(|st| s.table(st).rows().len() as u64 * plan.series_per_row(st)))
            .sum();
        let counted = rows + plan.other_series(&services, &acc);
        let text = Scrape::new(plan.clone(), services, Some(Arc::new(acc)), false, Vec::new()).into_string();
        let lines = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count() as u64;
        assert!(plan.series_per_row(Stream::Origin) > 0 && rows > 0);
        assert_eq!(counted, lines);
    }
}
