//! Typed identifiers of the families that are not stream rows: per-service, account-wide
//! and the exporter's own. Code refers to a family through these enums and matches on them
//! exhaustively; `families.tsv` still holds each family's name, type, labels and help.
//!
//! Each identifier is tied to its catalog line by name. Parsing the catalog fails on a line
//! whose name no identifier has, and on an identifier no line declares, so renaming a line
//! without its identifier (or the reverse) fails at start-up and in the unit tests, instead of
//! silently dropping a family from the output.

/// Declares an identifier enum with its catalog names.
macro_rules! family_ids {
    ($(#[$meta:meta])* $enum:ident { $($(#[$vmeta:meta])* $variant:ident = $name:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $enum {
            $($(#[$vmeta])* $variant,)*
        }

        impl $enum {
            /// Every identifier, in declaration order.
            pub const ALL: &'static [$enum] = &[$($enum::$variant,)*];

            /// The family's name in `families.tsv`.
            pub fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => $name,)*
                }
            }

            /// The identifier of a catalog name.
            pub fn from_name(name: &str) -> Option<$enum> {
                Self::ALL.iter().copied().find(|id| id.name() == name)
            }
        }
    };
}

family_ids! {
    /// Per-service families fed by the service list and the pollers (catalog scope `service`).
    ServiceFamily {
        /// `service_info`: name and active version.
        ServiceInfo = "service_info",
        /// `last_successful_response`: time of the last parsed 200.
        LastSuccessfulResponse = "last_successful_response",
        /// `realtime_api_requests_total`: poll outcomes.
        RealtimeApiRequests = "realtime_api_requests_total",
    }
}

family_ids! {
    /// Account-wide families (catalog scope `account`).
    AccountFamily {
        /// `datacenter_info`: the POP list.
        DatacenterInfo = "datacenter_info",
        /// `token_expiration`: when the API token expires.
        TokenExpiration = "token_expiration",
        /// `cert_expiry_timestamp_seconds`: custom TLS certificates.
        CertExpiry = "cert_expiry_timestamp_seconds",
        /// `dictionary_item_count`: items per edge dictionary.
        DictionaryItemCount = "dictionary_item_count",
        /// `dictionary_last_updated_timestamp_seconds`.
        DictionaryLastUpdated = "dictionary_last_updated_timestamp_seconds",
        /// `build_info`: this binary.
        BuildInfo = "build_info",
    }
}

family_ids! {
    /// The exporter's own families (catalog scope `exporter`), served on plain `/metrics` only.
    /// Their names are fixed, not built from `-namespace`, so alerts on the exporter do not
    /// depend on its configuration; they are never filtered.
    ExporterFamily {
        /// Requests to the Fastly APIs by endpoint and status.
        ApiRequests = "fastly_exporter_api_requests_total",
        /// `Fastly-RateLimit-Remaining` of the last API answer.
        ApiRateLimitRemaining = "fastly_exporter_api_rate_limit_remaining",
        /// Pollers restarted after a panic.
        PollerRestarts = "fastly_exporter_poller_restarts_total",
        /// Running pollers by product.
        Pollers = "fastly_exporter_pollers",
        /// Duration of the previous full scrape.
        ScrapeDuration = "fastly_exporter_scrape_duration_seconds",
        /// CPU time of the process.
        ProcessCpu = "process_cpu_seconds_total",
        /// Open file descriptors.
        ProcessOpenFds = "process_open_fds",
        /// Resident memory.
        ProcessResidentMemory = "process_resident_memory_bytes",
        /// Start time of the process.
        ProcessStartTime = "process_start_time_seconds",
        /// HTTP requests whose handler panicked.
        HttpPanics = "fastly_exporter_http_panics_total",
        /// Client connections open now.
        HttpConnections = "fastly_exporter_http_connections",
        /// Client connections accepted.
        HttpConnectionsAccepted = "fastly_exporter_http_connections_accepted_total",
        /// Idle client connections closed to make room at the cap.
        HttpConnectionsEvicted = "fastly_exporter_http_connections_evicted_total",
        /// Client connections refused at the cap.
        HttpConnectionsRejected = "fastly_exporter_http_connections_rejected_total",
        /// Failed `accept()` calls.
        HttpAcceptErrors = "fastly_exporter_http_accept_errors_total",
        /// Requests refused before they were read (408, 411, 413, 414, 431).
        HttpRequestsRefused = "fastly_exporter_http_requests_refused_total",
        /// Requests dropped because their client left before a worker took them.
        HttpRequestsDropped = "fastly_exporter_http_requests_dropped_total",
        /// Requests refused by basic auth.
        HttpAuthFailures = "fastly_exporter_http_auth_failures_total",
        /// Invalid values skipped in real-time answers.
        InvalidFields = "fastly_exporter_invalid_fields_total",
        /// Distinct datacenter, origin and domain names held.
        InternedNames = "fastly_exporter_interned_names",
        /// Series the stream families serve now, by stream.
        Series = "fastly_exporter_series",
        /// The same data counted per datacenter mode (per POP, per group, aggregate).
        SeriesByMode = "fastly_exporter_series_by_mode",
        /// POP codes seen, by state (listed, unlisted, filtered).
        Datacenters = "fastly_exporter_datacenters",
        /// Seconds the real-time API no longer held when asked for, by stream.
        LostSeconds = "fastly_exporter_lost_seconds_total",
        /// State file writes by result.
        StateWrites = "fastly_exporter_state_writes_total",
    }
}
