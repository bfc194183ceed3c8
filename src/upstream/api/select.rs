//! Which listed services to export: explicit IDs, name allow/block lists, then the shard.

use crate::util::filter::Filter;

use super::services::ServiceInfo;
use super::shard::in_shard;

/// A service chosen for export, with the labels its series carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    /// Service ID.
    pub id: String,
    /// Name from the list, or the ID when the list did not include it.
    pub name: String,
    /// Active version as a label value, or `unknown`.
    pub version: String,
}

/// The selection rules from the command line.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    /// `-service` IDs; empty selects every listed service.
    pub ids: Vec<String>,
    /// `-service-allowlist` / `-service-blocklist` on names.
    pub names: Filter,
    /// `-service-shard n/m`.
    pub shard: Option<(u64, u64)>,
}

impl Selector {
    /// Applies the rules to the listed services: OR within a flag, AND across flags, then the
    /// shard. An explicit ID missing from the list is still selected (name = ID, version
    /// `unknown`), so a token that cannot list services can still poll known ones.
    pub fn select(&self, listed: &[ServiceInfo]) -> Vec<Selected> {
        let mut out: Vec<Selected> = Vec::new();
        let mut push = |id: &str, name: &str, version: String| {
            let sharded = self.shard.is_none_or(|(n, m)| in_shard(id, n, m));
            if self.names.permits(name) && sharded && !out.iter().any(|s| s.id == id) {
                out.push(Selected { id: id.to_string(), name: name.to_string(), version });
            }
        };
        if self.ids.is_empty() {
            for s in listed {
                push(&s.id, &s.name, s.version.to_string());
            }
        } else {
            for id in &self.ids {
                match listed.iter().find(|s| &s.id == id) {
                    Some(s) => push(&s.id, &s.name, s.version.to_string()),
                    None => push(id, id, "unknown".to_string()),
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn svc(id: &str, name: &str, version: i64) -> ServiceInfo {
        ServiceInfo { id: id.into(), name: name.into(), version }
    }

    fn ids(v: &[Selected]) -> Vec<&str> {
        v.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn filters_combine() {
        let listed = [
            svc("AbcDef123ghiJKlmnOPsq", "My first service", 5),
            svc("XXXXXXXXXXXXXXXXXXXXXX", "Dummy service", 1),
            svc("c", "staging thing", 2),
        ];
        let all = Selector::default().select(&listed);
        assert_eq!(ids(&all), ["AbcDef123ghiJKlmnOPsq", "XXXXXXXXXXXXXXXXXXXXXX", "c"]);
        let names = Filter::new(vec![Regex::new("service").unwrap()], vec![Regex::new("Dummy").unwrap()]);
        let sel = Selector { names, ..Default::default() };
        assert_eq!(ids(&sel.select(&listed)), ["AbcDef123ghiJKlmnOPsq"]);
        let shard1 = Selector { shard: Some((1, 3)), ..Default::default() };
        assert!(ids(&shard1.select(&listed)).contains(&"AbcDef123ghiJKlmnOPsq"));
        assert!(!ids(&shard1.select(&listed)).contains(&"XXXXXXXXXXXXXXXXXXXXXX"));
        let shard2 = Selector { shard: Some((2, 3)), ..Default::default() };
        assert!(ids(&shard2.select(&listed)).contains(&"XXXXXXXXXXXXXXXXXXXXXX"));
    }

    #[test]
    fn explicit_ids_missing_from_the_list_are_kept() {
        let listed = [svc("a", "A", 3), svc("b", "B", 4)];
        let sel = Selector { ids: vec!["b".into(), "zz".into(), "b".into()], ..Default::default() };
        let got = sel.select(&listed);
        assert_eq!(got[0], Selected { id: "b".into(), name: "B".into(), version: "4".into() });
        assert_eq!(got[1], Selected { id: "zz".into(), name: "zz".into(), version: "unknown".into() });
        assert_eq!(got.len(), 2);
    }
}
