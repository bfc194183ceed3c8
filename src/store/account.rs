//! Account-wide metadata: what api.fastly.com says about datacenters, the token, TLS
//! certificates and dictionaries, plus the build. Refreshed by the main thread on its own
//! schedules and swapped in whole, so a scrape sees one consistent snapshot.

use std::collections::BTreeMap;

/// One Fastly POP from `GET /datacenters`.
#[derive(Clone, Debug, PartialEq)]
pub struct Datacenter {
    /// Three-letter code, e.g. `AMS`.
    pub code: String,
    /// City name.
    pub name: String,
    /// Region group.
    pub group: String,
    /// Latitude, already formatted as the shortest decimal (no exponent).
    pub latitude: String,
    /// Longitude, same formatting.
    pub longitude: String,
}

/// The API token's identity and expiry from `GET /tokens/self`.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenInfo {
    /// Token ID.
    pub id: String,
    /// Owning user ID.
    pub user_id: String,
    /// Expiry as unix seconds; `None` when the token never expires (no series then).
    pub expires_at: Option<f64>,
}

/// A custom TLS certificate from `GET /tls/certificates`.
#[derive(Clone, Debug, PartialEq)]
pub struct Certificate {
    /// `issued_to` (the common name).
    pub cn: String,
    /// Certificate name.
    pub name: String,
    /// Certificate ID.
    pub id: String,
    /// Issuer.
    pub issuer: String,
    /// Serial number in uppercase hex.
    pub sn: String,
    /// `not_after` as unix seconds.
    pub not_after: f64,
}

/// One edge dictionary of a service's active version.
#[derive(Clone, Debug, PartialEq)]
pub struct Dictionary {
    /// Dictionary ID.
    pub id: String,
    /// Dictionary name.
    pub name: String,
    /// The service version the dictionary belongs to.
    pub version: String,
    /// Number of items.
    pub item_count: f64,
    /// Last update as unix seconds.
    pub last_updated: f64,
}

/// Labels of `build_info`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct BuildInfo {
    /// Crate version.
    pub version: String,
    /// Git revision the binary was built from.
    pub revision: String,
    /// Git branch.
    pub branch: String,
    /// Git tags at the revision.
    pub tags: String,
    /// rustc version.
    pub rustversion: String,
    /// Target OS.
    pub os: String,
    /// Target architecture.
    pub arch: String,
}

/// Everything account-scoped that a scrape renders.
#[derive(Clone, Debug, Default)]
pub struct AccountSnapshot {
    /// Datacenters sorted by code.
    pub datacenters: Vec<Datacenter>,
    /// The token, once fetched.
    pub token: Option<TokenInfo>,
    /// Certificates in API order.
    pub certificates: Vec<Certificate>,
    /// Dictionaries per service ID.
    pub dictionaries: BTreeMap<String, Vec<Dictionary>>,
    /// The build.
    pub build: BuildInfo,
}
