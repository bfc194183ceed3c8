//! Which families a configuration exports, under which full names.
//!
//! This is a domain decision, not an HTTP one: what is exported decides which streams are
//! polled and which account metadata is fetched (nothing is fetched that nobody exports), and
//! the renderer only formats what the selection holds.

use crate::util::filter::Filter;

use super::{AccountFamily, Family, Kind, Scope, ServiceFamily, Stream, catalog, fq_name};

/// One exported family and its full name.
#[derive(Debug)]
pub struct Selected {
    /// The catalog entry.
    pub family: &'static Family,
    /// Namespace, subsystem and name joined (exporter families keep their fixed names).
    pub name: String,
}

/// The exported families, sorted by full name as client_golang sorts them.
#[derive(Debug)]
pub struct Selection {
    families: Vec<Selected>,
    /// `namespace_subsystem`, the program name some help texts mention.
    program: String,
}

impl Selection {
    /// The families `metrics` lets through, named with `namespace` and `subsystem` as the Go
    /// exporter names them. Rules kept from the Go exporter: `build_info` is never filtered;
    /// `service_info` and `last_successful_response` ignore the allowlist (only the blocklist
    /// applies); the exporter's own families are never filtered.
    pub fn new(namespace: &str, subsystem: &str, metrics: &Filter) -> Selection {
        let mut families = Vec::new();
        for family in &catalog().families {
            let name = match family.scope {
                Scope::Stream(s) => fq_name(namespace, s.subsystem(subsystem), family.name),
                Scope::Exporter(_) => family.name.to_string(),
                _ => fq_name(namespace, subsystem, family.name),
            };
            let keep = match family.scope {
                Scope::Account(AccountFamily::BuildInfo) | Scope::Exporter(_) => true,
                Scope::Service(ServiceFamily::ServiceInfo | ServiceFamily::LastSuccessfulResponse) => {
                    !metrics.blocked(&name)
                }
                _ => metrics.permits(&name),
            };
            if keep {
                families.push(Selected { family, name });
            }
        }
        families.sort_by(|a, b| a.name.cmp(&b.name));
        let program = fq_name(namespace, subsystem, "").trim_end_matches('_').to_string();
        Selection { families, program }
    }

    /// The exported families, sorted by full name.
    pub fn families(&self) -> &[Selected] {
        &self.families
    }

    /// The program name (`fastly_rt` by default) that `{program}` in help texts stands for.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// True when the family of a typed scope is exported.
    pub fn exports(&self, scope: Scope) -> bool {
        self.families.iter().any(|f| f.family.scope == scope)
    }

    /// True when any family of the stream is exported (only then is it polled).
    pub fn exports_stream(&self, stream: Stream) -> bool {
        self.exports(Scope::Stream(stream))
    }

    /// Series one row of the stream exports: one per series of a counter or gauge; for a
    /// histogram one per bucket, `+Inf`, `_sum` and `_count`. Rows × this is what a table costs
    /// the scraper (the exporter's `fastly_exporter_series` self-metrics).
    pub fn series_per_row(&self, stream: Stream) -> usize {
        self.families
            .iter()
            .filter(|f| f.family.scope == Scope::Stream(stream))
            .map(|f| match f.family.kind {
                Kind::Histogram => f.family.series.len() * (f.family.buckets.len() + 3),
                _ => f.family.series.len(),
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ExporterFamily;

    fn filter(allow: &[&str], block: &[&str]) -> Filter {
        let re = |v: &[&str]| v.iter().map(|s| regex::Regex::new(s).unwrap()).collect();
        Filter::new(re(allow), re(block))
    }

    #[test]
    fn the_go_exporters_filter_exceptions_hold() {
        let s = Selection::new("fastly", "rt", &filter(&["^fastly_rt_requests_total$"], &[]));
        assert!(s.exports(Scope::Account(AccountFamily::BuildInfo)));
        assert!(s.exports(Scope::Service(ServiceFamily::ServiceInfo)));
        assert!(!s.exports(Scope::Service(ServiceFamily::RealtimeApiRequests)));
        assert!(!s.exports(Scope::Account(AccountFamily::CertExpiry)));
        assert!(s.exports_stream(Stream::Realtime) && !s.exports_stream(Stream::Origin));
        assert!(s.exports(Scope::Exporter(ExporterFamily::ApiRequests)));
        let blocked = Selection::new("fastly", "rt", &filter(&[], &["service_info", "fastly_exporter"]));
        assert!(!blocked.exports(Scope::Service(ServiceFamily::ServiceInfo)));
        assert!(blocked.exports(Scope::Exporter(ExporterFamily::ApiRequests)), "never filtered");
        assert_eq!(blocked.program(), "fastly_rt");
        assert_eq!(blocked.series_per_row(Stream::Realtime), 287);
        assert_eq!(blocked.series_per_row(Stream::Domain), 63);
        assert_eq!(s.series_per_row(Stream::Realtime), 1, "only requests_total");
        let names: Vec<&str> = blocked.families().iter().map(|f| f.name.as_str()).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted by full name");
    }
}
