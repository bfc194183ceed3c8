//! The service list: `GET /service`, paginated through `Link: <…>; rel="next"`.

use serde::Deserialize;

use crate::util::url::percent_decode;

use crate::upstream::transport::client::{ApiError, Client};

/// The first page; later pages come from the `Link` header.
pub const FIRST_PAGE: &str = "/service?page=1&per_page=1000&filter[include_versions]=false";

/// Upper bound on pages followed, so a server that links in a circle cannot hang the refresh.
const MAX_PAGES: usize = 10_000;

/// What the exporter needs to know about a service.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ServiceInfo {
    /// Service ID.
    pub id: String,
    /// Service name.
    #[serde(default)]
    pub name: String,
    /// Active version (0 when never activated).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub version: i64,
}

/// Why a refresh failed; the previous list is kept in every case.
#[derive(Debug)]
pub enum ListError {
    /// No usable answer.
    Api(ApiError),
    /// An answer other than 200.
    Status(u16, String),
    /// A 200 whose body is not a JSON list of services.
    Decode(serde_json::Error),
    /// Pagination went on past [`MAX_PAGES`] (a server linking in a circle).
    TooManyPages,
    /// A redirect, which is never followed: it would carry the token elsewhere.
    Redirect {
        /// The 3xx status.
        status: u16,
        /// Its `Location`, if any.
        location: Option<String>,
    },
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListError::Api(e) => write!(f, "{e}"),
            ListError::Status(s, url) => write!(f, "HTTP {s} from {url}"),
            ListError::Decode(e) => write!(f, "invalid service list: {e}"),
            ListError::TooManyPages => write!(f, "invalid service list: more than {MAX_PAGES} pages"),
            ListError::Redirect { status, location } => write!(
                f,
                "HTTP {status} redirect to {} not followed: the API token is only sent to the configured endpoint",
                location
                    .as_deref()
                    .and_then(crate::upstream::transport::client::Origin::of)
                    .map_or_else(|| "a relative location".to_string(), |o| o.to_string())
            ),
        }
    }
}

impl std::error::Error for ListError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Displayed as itself: its cause is the next one down.
            ListError::Api(e) => e.source(),
            ListError::Decode(e) => Some(e),
            ListError::Status(..) | ListError::TooManyPages | ListError::Redirect { .. } => None,
        }
    }
}

impl ListError {
    /// See [`ApiError::is_untrusted`].
    pub fn is_untrusted(&self) -> bool {
        matches!(self, ListError::Api(e) if e.is_untrusted())
    }
}

/// Fetches every page of the service list.
pub fn fetch_services(client: &Client) -> Result<Vec<ServiceInfo>, ListError> {
    let mut all = Vec::new();
    let mut next = Some(FIRST_PAGE.to_string());
    let mut pages = 0;
    while let Some(url) = next.take() {
        pages += 1;
        if pages > MAX_PAGES {
            return Err(ListError::TooManyPages);
        }
        let (reply, body) = client.get(&url).map_err(ListError::Api)?;
        if (300..400).contains(&reply.status) {
            return Err(ListError::Redirect { status: reply.status, location: reply.location });
        }
        if reply.status != 200 {
            return Err(ListError::Status(reply.status, path_of(&url)));
        }
        // Names may carry invalid UTF-8; replace it rather than lose the whole list.
        let text = String::from_utf8_lossy(&body);
        let page: Vec<ServiceInfo> = serde_json::from_str(&text).map_err(ListError::Decode)?;
        all.extend(page);
        next = reply.link.as_deref().and_then(next_link).map(|u| percent_decode(&u));
    }
    Ok(all)
}

fn path_of(url: &str) -> String {
    match url.find("://") {
        Some(i) => url[i + 3..].find('/').map(|j| url[i + 3 + j..].to_string()).unwrap_or_default(),
        None => url.to_string(),
    }
}

fn lenient_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(Option::<i64>::deserialize(d)?.unwrap_or(0))
}

/// The target of the `rel="next"` entry of an RFC 8288 `Link` header.
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>')? + open;
        let target = &rest[open + 1..close];
        let params_end = rest[close..].find('<').map(|i| close + i).unwrap_or(rest.len());
        let params = &rest[close + 1..params_end];
        let is_next = params.split(';').any(|p| {
            let p = p.trim().trim_end_matches(',').trim();
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim().trim_matches('"').split_whitespace().any(|r| r.eq_ignore_ascii_case("next"))
            })
        });
        if is_next {
            return Some(target.to_string());
        }
        rest = &rest[params_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next() {
        let h =
            r#"<https://api.fastly.com/service?filter%5Binclude_versions%5D=false&page=2&per_page=1000>; rel="next""#;
        assert_eq!(
            next_link(h).map(|u| percent_decode(&u)).as_deref(),
            Some("https://api.fastly.com/service?filter[include_versions]=false&page=2&per_page=1000")
        );
        let multi = r#"<http://x/?page=1>; rel="prev", <http://x/?page=3>; rel="next""#;
        assert_eq!(next_link(multi).as_deref(), Some("http://x/?page=3"));
        assert_eq!(next_link(r#"<http://x/?page=1>; rel="last""#), None);
        assert_eq!(next_link(""), None);
    }

    #[test]
    fn service_entries_tolerate_extras_and_nulls() {
        let v: Vec<ServiceInfo> =
            serde_json::from_str(r#"[{"id":"a","name":"n","version":null,"versions":[1]},{"id":"b"}]"#).unwrap();
        assert_eq!(v[0], ServiceInfo { id: "a".into(), name: "n".into(), version: 0 });
        assert_eq!(v[1].name, "");
    }
}
