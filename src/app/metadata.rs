//! Account metadata on the main thread's schedules: product entitlements, datacenters, the
//! token, certificates and dictionaries.
//!
//! Every source keeps its last good value when a refresh fails (logged once per state change),
//! and a source whose families the metric filters block is never fetched. Dictionaries, which
//! cost one request per service plus one per dictionary, are fetched one service per tick so a
//! large account never stalls the service-list refresh.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::catalog::{AccountFamily, Scope, Selection, Stream};
use crate::config::Config;
use crate::store::{AccountSnapshot, Grouping, Registry, Store, group_label};
use crate::upstream::api::account::{self, FetchError};
use crate::upstream::transport::client::Client;
use crate::util::errors::chain;
use crate::util::statelog::StateLog;

/// How often the token's expiry is re-read once known, and retried while unknown.
const TOKEN_REFRESH: Duration = Duration::from_secs(3600);
const TOKEN_RETRY: Duration = Duration::from_secs(60);

/// The two products whose streams need an entitlement.
const PRODUCTS: [(Stream, &str); 2] = [(Stream::Origin, "origin_inspector"), (Stream::Domain, "domain_inspector")];

/// State of the metadata sources.
pub struct Metadata {
    snapshot: AccountSnapshot,
    products: [Option<bool>; 2],
    next_products: Instant,
    next_datacenters: Instant,
    next_token: Instant,
    next_certificates: Instant,
    certificates_disabled: bool,
    next_dictionaries: Instant,
    dictionary_queue: VecDeque<(String, String)>,
    /// The snapshot changed since it was last published.
    unpublished: bool,
    next_publish: Instant,
    logs: Logs,
}

/// While a dictionary cycle runs (one service per tick), the snapshot is published at most
/// this often: publishing copies every service's dictionaries, and doing it after each of a
/// thousand services made the first cycle quadratic (3 M allocations at 1,000 services).
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Logs {
    products: StateLog,
    datacenters: StateLog,
    token: StateLog,
    certificates: StateLog,
    dictionaries: StateLog,
}

impl Metadata {
    /// Starts with every source due `now` (on the main loop's clock).
    pub fn new(initial: AccountSnapshot, now: Instant) -> Metadata {
        Metadata {
            snapshot: initial,
            products: [None, None],
            next_products: now,
            next_datacenters: now,
            next_token: now,
            next_certificates: now,
            certificates_disabled: false,
            next_dictionaries: now,
            dictionary_queue: VecDeque::new(),
            unpublished: false,
            next_publish: now,
            logs: Logs::default(),
        }
    }

    /// Makes every source due at once (SIGHUP: "refresh everything now").
    pub fn due_now(&mut self, now: Instant) {
        self.next_products = now;
        self.next_datacenters = now;
        self.next_token = now;
        self.next_certificates = now;
        self.next_dictionaries = now;
    }

    /// Whether the account is entitled to a stream's product (real-time: always). Unknown
    /// until the first successful check, and then the last known answer.
    pub fn entitled(&self, stream: Stream) -> bool {
        match PRODUCTS.iter().position(|(s, _)| *s == stream) {
            Some(i) => self.products[i].unwrap_or(false),
            None => true,
        }
    }

    /// Whether the account is entitled to a stream's product: `None` until the first
    /// successful check (real-time: always entitled).
    pub fn entitlement(&self, stream: Stream) -> Option<bool> {
        match PRODUCTS.iter().position(|(s, _)| *s == stream) {
            Some(i) => self.products[i],
            None => Some(true),
        }
    }

    /// Refreshes whatever is due at `now` (the main loop's clock). Returns true when an
    /// entitlement changed (pollers must be reconciled).
    pub fn tick(&mut self, api: &Client, cfg: &Config, selection: &Selection, store: &Store, now: Instant) -> bool {
        let mut changed_entitlement = false;
        let mut changed = false;
        if now >= self.next_products {
            self.next_products = now + cfg.product_refresh;
            changed_entitlement = self.refresh_products(api, selection);
        }
        if now >= self.next_datacenters {
            self.next_datacenters = now + cfg.datacenter_refresh;
            changed |= self.fetch_datacenters(api, selection, store);
        }
        if now >= self.next_token {
            self.next_token = now + TOKEN_REFRESH;
            if selection.exports(Scope::Account(AccountFamily::TokenExpiration)) {
                match account::token(api) {
                    Ok(t) => {
                        self.logs.token.ok("token refresh");
                        changed |= self.snapshot.token.as_ref() != Some(&t);
                        self.snapshot.token = Some(t);
                    }
                    Err(e) => {
                        self.next_token = now + TOKEN_RETRY;
                        self.logs.token.fail_as("token refresh", &keeping(&e), e.is_untrusted());
                    }
                }
            }
        }
        if let Some(every) = cfg.certificate_refresh
            && now >= self.next_certificates
            && !self.certificates_disabled
        {
            self.next_certificates = now + every;
            if selection.exports(Scope::Account(AccountFamily::CertExpiry)) {
                changed |= self.refresh_certificates(api);
            }
        }
        changed |= self.refresh_dictionaries(api, cfg, selection, &store.registry, now);
        self.unpublished |= changed;
        if self.unpublished && (!self.busy() || now >= self.next_publish) {
            self.publish(store);
            self.unpublished = false;
            self.next_publish = now + PUBLISH_EVERY;
        }
        changed_entitlement
    }

    /// Fetches the datacenter list now and publishes it (the first refresh under
    /// `-datacenter-group`, before any poll); the regular schedule goes on from here.
    pub fn refresh_datacenters(&mut self, api: &Client, selection: &Selection, store: &Store) {
        if self.fetch_datacenters(api, selection, store) {
            self.publish(store);
        }
    }

    /// The datacenter list: its groups go to the placement (which POP feeds which row), and
    /// `datacenter_info` lists the POPs the datacenter filters let through, with their group
    /// as the grouped rows name it. Fetched when `datacenter_info` is exported or rows are
    /// grouped. Returns true when the snapshot changed.
    fn fetch_datacenters(&mut self, api: &Client, selection: &Selection, store: &Store) -> bool {
        let placement = &store.placement;
        let grouped = placement.grouping() == Grouping::Group;
        if !grouped && !selection.exports(Scope::Account(AccountFamily::DatacenterInfo)) {
            return false;
        }
        match account::datacenters(api) {
            Ok(mut d) => {
                self.logs.datacenters.ok("datacenter refresh");
                if placement.learn(d.iter().map(|dc| (dc.code.as_str(), dc.group.as_str()))) {
                    log::debug!("datacenter groups changed; new data goes to the new groups");
                }
                d.retain(|dc| placement.permits(&dc.code));
                if grouped {
                    d.iter_mut().for_each(|dc| dc.group = group_label(&dc.group));
                }
                let changed = self.snapshot.datacenters != d;
                self.snapshot.datacenters = d;
                changed
            }
            Err(e) => {
                self.logs.datacenters.fail_as("datacenter refresh", &keeping(&e), e.is_untrusted());
                false
            }
        }
    }

    fn refresh_products(&mut self, api: &Client, selection: &Selection) -> bool {
        let mut changed = false;
        for (i, (stream, product)) in PRODUCTS.iter().enumerate() {
            if !selection.exports_stream(*stream) {
                continue;
            }
            match account::entitled(api, product) {
                Ok(has) => {
                    self.logs.products.ok("product entitlement refresh");
                    if self.products[i] != Some(has) {
                        log::info!(
                            "product {product}: {}",
                            if has { "entitled; polling its stream" } else { "not entitled" }
                        );
                        changed |= self.products[i].unwrap_or(false) != has;
                        self.products[i] = Some(has);
                    }
                }
                Err(e) => self.logs.products.fail_as("product entitlement refresh", &keeping(&e), e.is_untrusted()),
            }
        }
        changed
    }

    fn refresh_certificates(&mut self, api: &Client) -> bool {
        match account::certificates(api) {
            Ok(c) => {
                self.logs.certificates.ok("certificate refresh");
                let changed = self.snapshot.certificates != c;
                self.snapshot.certificates = c;
                changed
            }
            Err(FetchError::Status(403)) => {
                log::warn!(
                    "certificate refresh: HTTP 403, the token lacks the TLS scope; certificate metrics disabled"
                );
                self.certificates_disabled = true;
                false
            }
            Err(e) => {
                self.logs.certificates.fail_as("certificate refresh", &keeping(&e), e.is_untrusted());
                false
            }
        }
    }

    /// Starts a dictionary cycle when due, then fetches one service's dictionaries per tick.
    fn refresh_dictionaries(
        &mut self,
        api: &Client,
        cfg: &Config,
        selection: &Selection,
        registry: &Registry,
        now: Instant,
    ) -> bool {
        let wanted = selection.exports(Scope::Account(AccountFamily::DictionaryItemCount))
            || selection.exports(Scope::Account(AccountFamily::DictionaryLastUpdated));
        if !wanted {
            return false;
        }
        if self.dictionary_queue.is_empty() && now >= self.next_dictionaries {
            self.next_dictionaries = now + cfg.dictionary_refresh;
            for svc in registry.snapshot() {
                let version = svc.meta().version.clone();
                if version.parse::<i64>().is_ok_and(|v| v > 0) {
                    self.dictionary_queue.push_back((svc.id.to_string(), version));
                }
            }
        }
        let Some((id, version)) = self.dictionary_queue.pop_front() else {
            return false;
        };
        match account::dictionaries(api, &id, &version) {
            Ok(d) => {
                self.logs.dictionaries.ok("dictionary refresh");
                let changed = self.snapshot.dictionaries.get(&id) != Some(&d);
                self.snapshot.dictionaries.insert(id, d);
                changed
            }
            Err(e) => {
                self.logs.dictionaries.fail_as("dictionary refresh", &keeping(&e), e.is_untrusted());
                false
            }
        }
    }

    /// True while a dictionary cycle still has services to fetch (the main loop then ticks
    /// faster).
    pub fn busy(&self) -> bool {
        !self.dictionary_queue.is_empty()
    }

    /// Drops metadata of services no longer exported and publishes the snapshot.
    pub fn publish(&mut self, store: &Store) {
        self.snapshot.dictionaries.retain(|id, _| store.registry.get(id).is_some());
        store.publish_account(self.snapshot.clone());
    }
}

fn keeping(e: &FetchError) -> String {
    format!("{}; keeping the previous values", chain(e))
}
