//! Account metadata endpoints of api.fastly.com: product entitlements, datacenters, the token,
//! TLS certificates and edge dictionaries. Each function does the HTTP and turns the answer
//! into the table's plain structs; scheduling and failure handling live in `app::metadata`.

use serde::Deserialize;

use crate::store::{Certificate, Datacenter, Dictionary, TokenInfo};

use super::timefmt::{decimal_to_hex, parse_timestamp};
use crate::upstream::transport::client::{ApiError, Client};

/// Go's zero `time.Time` as unix seconds: what the Go exporter reports for a certificate whose
/// `not_after` does not parse. Kept for compatibility.
pub const GO_ZERO_TIME: f64 = -62_135_596_800.0;

/// Why an account endpoint gave no usable answer.
#[derive(Debug)]
pub enum FetchError {
    /// Transport-level failure.
    Api(ApiError),
    /// A status other than 200.
    Status(u16),
    /// A 200 whose body did not decode.
    Decode(serde_json::Error),
    /// Pagination went on past this many pages (a server linking in a circle).
    TooManyPages(usize),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Api(e) => write!(f, "{e}"),
            FetchError::Status(s) => write!(f, "HTTP {s}"),
            FetchError::Decode(e) => write!(f, "invalid response: {e}"),
            FetchError::TooManyPages(n) => write!(f, "invalid response: more than {n} certificate pages"),
        }
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Displayed as itself: its cause is the next one down.
            FetchError::Api(e) => e.source(),
            FetchError::Decode(e) => Some(e),
            FetchError::Status(_) | FetchError::TooManyPages(_) => None,
        }
    }
}

impl FetchError {
    /// See [`ApiError::is_untrusted`].
    pub fn is_untrusted(&self) -> bool {
        matches!(self, FetchError::Api(e) if e.is_untrusted())
    }
}

fn get_json<T: for<'de> Deserialize<'de>>(client: &Client, path: &str) -> Result<T, FetchError> {
    let (reply, body) = client.get(path).map_err(FetchError::Api)?;
    if reply.status != 200 {
        return Err(FetchError::Status(reply.status));
    }
    let text = String::from_utf8_lossy(&body);
    serde_json::from_str(&text).map_err(FetchError::Decode)
}

/// `GET /entitled-products/{product}` → `has_access`.
pub fn entitled(client: &Client, product: &str) -> Result<bool, FetchError> {
    #[derive(Deserialize)]
    struct Entitlement {
        #[serde(default)]
        has_access: bool,
    }
    Ok(get_json::<Entitlement>(client, &format!("/entitled-products/{product}"))?.has_access)
}

/// `GET /datacenters`, sorted by code.
pub fn datacenters(client: &Client) -> Result<Vec<Datacenter>, FetchError> {
    #[derive(Deserialize)]
    struct Coordinates {
        #[serde(default)]
        latitude: f64,
        #[serde(default)]
        longitude: f64,
    }
    #[derive(Deserialize)]
    struct Raw {
        code: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        group: String,
        coordinates: Option<Coordinates>,
    }
    let raw: Vec<Raw> = get_json(client, "/datacenters")?;
    let mut out: Vec<Datacenter> = raw
        .into_iter()
        .map(|r| {
            let (lat, long) = r.coordinates.map(|c| (c.latitude, c.longitude)).unwrap_or((0.0, 0.0));
            // Rust's Display is the shortest round-trip decimal without exponent, like Go's 'f', -1.
            Datacenter {
                code: r.code,
                name: r.name,
                group: r.group,
                latitude: lat.to_string(),
                longitude: long.to_string(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.code.cmp(&b.code));
    Ok(out)
}

/// `GET /tokens/self`.
pub fn token(client: &Client) -> Result<TokenInfo, FetchError> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        id: String,
        #[serde(default)]
        user_id: String,
        expires_at: Option<String>,
    }
    let raw: Raw = get_json(client, "/tokens/self")?;
    let expires_at = raw.expires_at.as_deref().and_then(parse_timestamp).map(|t| t as f64);
    Ok(TokenInfo { id: raw.id, user_id: raw.user_id, expires_at })
}

/// First page of the certificate list; later pages come from `links.next`.
pub const CERTIFICATES_FIRST: &str = "/tls/certificates?page[number]=1&page[size]=200&sort=created_at";

/// `GET /tls/certificates`, every page.
pub fn certificates(client: &Client) -> Result<Vec<Certificate>, FetchError> {
    #[derive(Deserialize, Default)]
    struct Attributes {
        #[serde(default)]
        issued_to: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        issuer: String,
        #[serde(default)]
        serial_number: String,
        #[serde(default)]
        not_after: String,
    }
    #[derive(Deserialize)]
    struct Item {
        #[serde(default)]
        id: String,
        #[serde(default)]
        attributes: Attributes,
    }
    #[derive(Deserialize, Default)]
    struct Links {
        next: Option<String>,
    }
    #[derive(Deserialize)]
    struct Page {
        #[serde(default)]
        data: Vec<Item>,
        #[serde(default)]
        links: Links,
    }
    let mut out = Vec::new();
    let mut next = Some(CERTIFICATES_FIRST.to_string());
    let mut pages = 0;
    while let Some(url) = next.take() {
        pages += 1;
        if pages > 1000 {
            return Err(FetchError::TooManyPages(1000));
        }
        let page: Page = get_json(client, &url)?;
        for item in page.data {
            let a = item.attributes;
            let sn = decimal_to_hex(&a.serial_number).unwrap_or(a.serial_number);
            let not_after = parse_timestamp(&a.not_after).map(|t| t as f64).unwrap_or(GO_ZERO_TIME);
            out.push(Certificate { cn: a.issued_to, name: a.name, id: item.id, issuer: a.issuer, sn, not_after });
        }
        next = page.links.next.filter(|n| !n.is_empty());
    }
    Ok(out)
}

/// Dictionaries of one service version: `GET …/dictionary` then `GET …/dictionary/{id}/info`.
pub fn dictionaries(client: &Client, service_id: &str, version: &str) -> Result<Vec<Dictionary>, FetchError> {
    #[derive(Deserialize)]
    struct Listed {
        id: String,
        #[serde(default)]
        name: String,
        updated_at: Option<String>,
    }
    #[derive(Deserialize)]
    struct Info {
        #[serde(default)]
        item_count: f64,
        last_updated: Option<String>,
    }
    let base = format!("/service/{service_id}/version/{version}/dictionary");
    let listed: Vec<Listed> = get_json(client, &base)?;
    let mut out = Vec::with_capacity(listed.len());
    for d in listed {
        let info: Info = get_json(client, &format!("{base}/{}/info", d.id))?;
        let last = info.last_updated.as_deref().and_then(parse_timestamp);
        let last = last.or_else(|| d.updated_at.as_deref().and_then(parse_timestamp)).unwrap_or(0);
        out.push(Dictionary {
            id: d.id,
            name: d.name,
            version: version.to_string(),
            item_count: info.item_count,
            last_updated: last as f64,
        });
    }
    Ok(out)
}
