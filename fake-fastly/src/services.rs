//! `GET /service`: the paginated service list, and the query-string helpers it needs.
//!
//! Pagination copies upstream's test mock byte for byte (see `tests/fixtures/api/README.md`):
//! `page` missing → 1, beyond the last page → 400, and the `Link` header re-encodes the
//! request's own query like Go's `url.Values.Encode` (keys sorted, brackets escaped).

use std::collections::{BTreeMap, HashSet};

use super::FakeService;

/// A service list plus what is derived from it once per change, not per request.
pub(super) struct ServiceSet {
    /// The services, in listing order.
    pub(super) list: Vec<FakeService>,
    /// Each service pre-rendered as a JSON object.
    items: Vec<String>,
    ids: HashSet<String>,
}

impl ServiceSet {
    /// Renders every service once; names go through serde_json for correct escaping.
    pub(super) fn new(list: Vec<FakeService>) -> ServiceSet {
        let items = list
            .iter()
            .map(|s| {
                let id = serde_json::to_string(&s.id).unwrap_or_default();
                let name = serde_json::to_string(&s.name).unwrap_or_default();
                format!(
                    r#"{{"version":{v},"name":{name},"created_at":"2018-07-26T06:13:51Z","versions":[],"comment":"","customer_id":"1a2a3a4azzzzzzzzzzzzzz","type":"vcl","updated_at":"2018-10-24T06:31:41Z","deleted_at":null,"id":{id}}}"#,
                    v = s.version
                )
            })
            .collect();
        let ids = list.iter().map(|s| s.id.clone()).collect();
        ServiceSet { list, items, ids }
    }

    /// Whether streams should answer for `id`.
    pub(super) fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

/// Value of a hex digit, for percent-decoding.
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Go `url.QueryUnescape`: `%XX` and `+` → space. Malformed escapes are kept verbatim.
pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Go `url.QueryEscape`: unreserved characters kept, space → `+`, the rest `%XX`.
pub(super) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(c as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{c:02X}")),
        }
    }
    out
}

/// Parses a query string into decoded keys and values, sorted by key (values keep order),
/// which is both a lookup table and Go's `url.Values` encoding order.
pub(super) fn parse_query(query: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.entry(percent_decode(k)).or_default().push(percent_decode(v));
    }
    map
}

/// Go `url.Values.Encode`.
pub(super) fn encode_query(map: &BTreeMap<String, Vec<String>>) -> String {
    let mut out = String::new();
    for (k, vs) in map {
        for v in vs {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(&query_escape(k));
            out.push('=');
            out.push_str(&query_escape(v));
        }
    }
    out
}

/// First value of `key` parsed as a number, if present and numeric.
pub(super) fn number(map: &BTreeMap<String, Vec<String>>, key: &str) -> Option<usize> {
    map.get(key)?.first()?.trim().parse().ok()
}

/// One page of the service list.
pub(super) struct Page {
    /// 200, or 400 beyond the last page.
    pub(super) status: u16,
    /// JSON array of services (empty on 400).
    pub(super) body: Vec<u8>,
    /// `Link` header value when another page exists.
    pub(super) link: Option<String>,
}

/// Answers `GET /service?<query>`; `base` is the absolute URL prefix for the `Link` header.
pub(super) fn list_page(set: &ServiceSet, query: &str, base: &str, max_page_size: usize) -> Page {
    let mut q = parse_query(query);
    let page = number(&q, "page").unwrap_or(1).max(1);
    let size = number(&q, "per_page").filter(|&n| n > 0).map_or(max_page_size, |n| n.min(max_page_size));
    let pages = set.items.len().div_ceil(size).max(1);
    if page > pages {
        return Page { status: 400, body: Vec::new(), link: None };
    }
    let start = (page - 1) * size;
    let end = (start + size).min(set.items.len());
    let mut body = String::with_capacity(2 + (end - start) * 260);
    body.push('[');
    body.push_str(&set.items[start..end].join(","));
    body.push(']');
    let link = (page < pages).then(|| {
        q.insert("page".to_string(), vec![(page + 1).to_string()]);
        format!("<{base}/service?{}>; rel=\"next\"", encode_query(&q))
    });
    Page { status: 200, body: body.into_bytes(), link }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_matches_upstream_readme() {
        let list = (0..10).map(|i| FakeService::new(format!("s{i}"), format!("n{i}"), 1)).collect();
        let set = ServiceSet::new(list);
        let base = "https://api.fastly.com";
        let p = list_page(&set, "page=1&per_page=1000&filter%5Binclude_versions%5D=false", base, 4);
        assert_eq!(
            p.link.as_deref(),
            Some(
                "<https://api.fastly.com/service?filter%5Binclude_versions%5D=false&page=2&per_page=1000>; rel=\"next\""
            )
        );
        let p = list_page(&set, "filter[include_versions]=false&page=3&per_page=1000", base, 4);
        assert_eq!(p.status, 200);
        assert!(p.link.is_none());
        let p = list_page(&set, "page=4&per_page=1000", base, 4);
        assert_eq!(p.status, 400);
    }

    #[test]
    fn decode_and_escape() {
        assert_eq!(percent_decode("a%5Bb%5d+c%"), "a[b] c%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(query_escape("page[number]"), "page%5Bnumber%5D");
        assert_eq!(query_escape("a b~"), "a+b~");
    }
}
