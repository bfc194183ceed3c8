//! Canned answers for the small api.fastly.com endpoints (datacenters, tokens, products,
//! dictionaries, certificates...), set by tests or by the `fake-fastly` binary.
//!
//! Paged routes follow Fastly's JSON:API style used by `/tls/certificates`: the page comes
//! from `page[number]` (or `page`), and the body itself says where the next page is, in
//! `links.next`. Since only the fake knows its own URL, bodies carry a `{{NEXT}}`
//! placeholder that is rewritten per request.

use std::sync::Arc;

use super::services::{encode_query, number, parse_query};

/// Placeholder replaced by the absolute URL of the next page.
const NEXT: &str = "{{NEXT}}";
/// Placeholder replaced by the fake's base URL (`http://host:port`).
const BASE: &str = "{{BASE}}";

/// One canned path: a status and one body per page, plus extra headers and a delay.
pub(super) struct Route {
    status: u16,
    pages: Vec<Arc<[u8]>>,
    /// Extra response headers (e.g. `Retry-After`).
    pub(super) headers: Vec<(String, String)>,
    /// How long the answer is held (in the delay queue).
    pub(super) delay: std::time::Duration,
}

impl Route {
    /// A route answering `status`; with several `pages`, the request picks one.
    pub(super) fn new(status: u16, pages: Vec<Vec<u8>>) -> Route {
        let mut pages: Vec<Arc<[u8]>> = pages.into_iter().map(Arc::from).collect();
        if pages.is_empty() {
            pages.push(Arc::from(Vec::new()));
        }
        Route { status, pages, headers: Vec::new(), delay: std::time::Duration::ZERO }
    }

    /// Status and body for `GET path?query`; `base` is the fake's base URL as the client
    /// addressed it. Page numbers outside `1..=pages` answer 400 with no body.
    pub(super) fn answer(&self, path: &str, query: &str, base: &str) -> (u16, Arc<[u8]>) {
        let mut q = parse_query(query);
        let key = if q.contains_key("page[number]") || !q.contains_key("page") { "page[number]" } else { "page" };
        let page = if self.pages.len() == 1 { 1 } else { number(&q, key).unwrap_or(1) };
        if page == 0 || page > self.pages.len() {
            return (400, Arc::from(Vec::new()));
        }
        let body = &self.pages[page - 1];
        if !body.windows(2).any(|w| w == b"{{") {
            return (self.status, Arc::clone(body));
        }
        let mut text = String::from_utf8_lossy(body).into_owned();
        if page < self.pages.len() {
            q.insert(key.to_string(), vec![(page + 1).to_string()]);
            let next = format!("{base}{path}?{}", encode_query(&q));
            text = text.replace(NEXT, &next);
        } else {
            text = text.replace(&format!("\"{NEXT}\""), "null").replace(NEXT, "");
        }
        text = text.replace(BASE, base);
        (self.status, Arc::from(text.into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_placeholder_points_at_following_page() {
        let tpl = br#"{"data":[],"links":{"next":"{{NEXT}}","self":"{{BASE}}/x"}}"#.to_vec();
        let r = Route::new(200, vec![tpl.clone(), tpl.clone(), tpl]);
        let q = "page%5Bnumber%5D=2&page%5Bsize%5D=200&sort=created_at";
        let (status, body) = r.answer("/tls/certificates", q, "http://h:1");
        assert_eq!(status, 200);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"data":[],"links":{"next":"http://h:1/tls/certificates?page%5Bnumber%5D=3&page%5Bsize%5D=200&sort=created_at","self":"http://h:1/x"}}"#
        );
        let (_, last) = r.answer("/tls/certificates", "page%5Bnumber%5D=3", "http://h:1");
        assert!(std::str::from_utf8(&last).unwrap().contains(r#""next":null"#));
        let (status, _) = r.answer("/tls/certificates", "page%5Bnumber%5D=4", "http://h:1");
        assert_eq!(status, 400);
    }

    #[test]
    fn single_page_ignores_query() {
        let r = Route::new(403, vec![Vec::new()]);
        let (status, body) = r.answer("/x", "page=7", "http://h:1");
        assert_eq!((status, body.len()), (403, 0));
    }
}
