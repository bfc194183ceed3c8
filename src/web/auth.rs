//! HTTP basic authentication against `basic_auth_users` bcrypt hashes.
//!
//! bcrypt is slow on purpose (tens of milliseconds at cost 10, four times that at 12), and
//! Prometheus sends the same credentials on every scrape, so results are cached per
//! (user, password, hash), as the exporter toolkit does: a scrape storm costs one bcrypt per
//! distinct credential, not one per request. Unlike the toolkit (whose cache key holds the
//! password in hex), the key here is an HMAC-SHA256 under a per-process random key: the
//! cache never holds the password, and its entries cannot be precomputed.
//!
//! Timing: an unknown user still costs a full bcrypt (against a dummy hash of the highest
//! configured cost), so response time does not reveal which users exist; cached digests are
//! compared in constant time.
//!
//! Floods: bcrypt runs one at a time (as in the toolkit, whose mutex does the same), so a
//! flood of wrong passwords uses one core, not all of them. Unlike the toolkit, the queue for
//! it is short ([`CHECKS_WAITING`]): a request whose credentials are not cached and that
//! finds it full is answered at once ([`AuthResult::Busy`], 429) instead of parking an HTTP
//! worker, so a flood holds at most [`CHECKS_AT_ONCE`] + [`CHECKS_WAITING`] workers and the
//! others keep answering scrapers, whose credentials are cached and never wait for bcrypt.
//! The cost: a valid credential not verified yet may be answered 429 during a flood; it is
//! accepted (and cached) with the first try after it.
//!
//! Passwords and hashes are never logged: hashes live in [`Secret`]s and decoded passwords in
//! zeroized buffers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use ring::hmac;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::config::Secret;
use crate::util::slots::Slots;

/// The `WWW-Authenticate` value sent with every 401.
pub const WWW_AUTHENTICATE: &str = "Basic realm=\"fastly-exporter\"";

/// Cached successes, and separately failures, kept at most; beyond that the oldest entry of
/// that kind goes. Each entry is ~50 bytes, so the cache stays under 100 KB however many
/// credentials are tried.
pub const CACHE_CAPACITY: usize = 1024;

/// bcrypt checks that run at once (CPU-bound: one keeps a flood on one core).
pub const CHECKS_AT_ONCE: usize = 1;

/// Checks that may wait for their turn; a request beyond them is answered 429 at once.
pub const CHECKS_WAITING: usize = 3;

/// Longest wait for a turn to check (three cost-12 checks take about a second).
pub const CHECK_WAIT: Duration = Duration::from_secs(2);

/// A valid bcrypt hash (of "fakepassword", from the toolkit) whose cost digits are replaced by
/// the highest configured cost, so unknown users cost as much as the slowest real one.
const DUMMY_HASH_TAIL: &str = "$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

/// Checks that a `basic_auth_users` value is a bcrypt hash the verifier can use; returns its
/// cost. The reason never contains the hash.
pub fn validate_hash(hash: &str) -> Result<u32, String> {
    match bcrypt::HashParts::from_str(hash) {
        // Parsing does not check the cost; verification would refuse it (as Go does at load).
        Ok(parts) if !(4..=31).contains(&parts.get_cost()) => {
            Err(format!("cost {} is outside 4..31", parts.get_cost()))
        }
        Ok(parts) => Ok(parts.get_cost()),
        // The crate's messages are fixed strings: they never quote the hash.
        Err(bcrypt::BcryptError::InvalidHash(why)) => Err(format!("{why}; make one with htpasswd -nBC 10 USER")),
        Err(_) => Err("unusable hash; make one with htpasswd -nBC 10 USER".to_string()),
    }
}

/// The outcome of checking a request's `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthResult {
    /// Valid credentials for this user.
    Allowed { user: String },
    /// No `Authorization: Basic` header, or one that does not decode.
    Missing,
    /// Credentials given but wrong (unknown user or wrong password).
    Denied { user: String },
    /// Credentials not cached, and too many checks in progress to check them now.
    Busy,
}

impl AuthResult {
    #[cfg(test)]
    pub fn allowed(&self) -> bool {
        matches!(self, AuthResult::Allowed { .. })
    }
}

impl fmt::Debug for AuthResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthResult::Allowed { user } => write!(f, "Allowed({user:?})"),
            AuthResult::Missing => f.write_str("Missing"),
            AuthResult::Denied { user } => write!(f, "Denied({user:?})"),
            AuthResult::Busy => f.write_str("Busy"),
        }
    }
}

/// Credentials from an `Authorization` header. The password is wiped from memory on drop.
pub struct Credentials {
    pub user: String,
    pub password: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("password", &"<redacted>").finish()
    }
}

/// Parses `Basic base64(user:password)` like Go's `Request.BasicAuth`: the scheme is
/// case-insensitive, the base64 is standard with padding, and the user ends at the first `:`.
/// A user name that is not UTF-8 cannot match any configured user, so it is refused here.
pub fn parse_basic(header: &str) -> Option<Credentials> {
    let prefix = header.get(..6)?;
    if !prefix.eq_ignore_ascii_case("basic ") {
        return None;
    }
    let decoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(&header[6..]).ok()?);
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_string();
    Some(Credentials { user, password: Zeroizing::new(decoded[colon + 1..].to_vec()) })
}

/// Constant-time equality of two byte strings of equal length (length is not secret here:
/// every digest is 32 bytes).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Verification results of one kind, keyed by the digest's first 8 bytes; the full digest is
/// stored and compared in constant time, so a lookup reveals nothing about other entries.
#[derive(Default)]
struct Bucket {
    entries: HashMap<u64, [u8; 32]>,
    /// Insertion order, for evicting the oldest entry.
    order: VecDeque<u64>,
}

impl Bucket {
    fn contains(&self, digest: &[u8; 32]) -> bool {
        self.entries.get(&index(digest)).is_some_and(|stored| ct_eq(stored, digest))
    }

    fn insert(&mut self, digest: [u8; 32]) {
        let i = index(&digest);
        if self.entries.insert(i, digest).is_none() {
            self.order.push_back(i);
            while self.order.len() > CACHE_CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.entries.remove(&old);
                }
            }
        }
    }
}

/// Successes and failures are kept apart, each bounded: a flood of wrong passwords evicts
/// only other failures, never the scrapers' valid credentials, so real scrapes stay on the
/// fast path (and out of the bcrypt queue) during an attack.
#[derive(Default)]
struct Cache {
    ok: Bucket,
    failed: Bucket,
}

impl Cache {
    fn get(&self, digest: &[u8; 32]) -> Option<bool> {
        if self.ok.contains(digest) {
            Some(true)
        } else if self.failed.contains(digest) {
            Some(false)
        } else {
            None
        }
    }

    fn insert(&mut self, digest: [u8; 32], ok: bool) {
        if ok { self.ok.insert(digest) } else { self.failed.insert(digest) }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ok.entries.len() + self.failed.entries.len()
    }
}

fn index(digest: &[u8; 32]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(b)
}

/// Basic-auth verifier for one `basic_auth_users` map. Shared by all HTTP workers.
pub struct BasicAuth {
    users: BTreeMap<String, Secret>,
    dummy: String,
    key: hmac::Key,
    cache: Mutex<Cache>,
    /// Turns to run bcrypt, and the short queue for them (see the module docs).
    checks: Arc<Slots>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth").field("users", &self.users.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// A verifier for `users` (user → bcrypt hash, as validated by the config loader).
    pub fn new(users: &BTreeMap<String, Secret>) -> BasicAuth {
        let cost = users.values().filter_map(|h| validate_hash(h.expose()).ok()).max().unwrap_or(10);
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new()).unwrap_or_else(|_| {
            // No OS randomness (practically impossible on Linux): the cache stays correct,
            // only its keys become predictable.
            let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
            hmac::Key::new(hmac::HMAC_SHA256, seed.as_bytes())
        });
        BasicAuth {
            users: users.clone(),
            dummy: format!("$2y${cost:02}{DUMMY_HASH_TAIL}"),
            key,
            cache: Mutex::new(Cache::default()),
            checks: Arc::new(Slots::with_queue(CHECKS_AT_ONCE, CHECKS_WAITING)),
        }
    }

    #[cfg(test)]
    /// `true` when the header carries valid credentials.
    pub fn check(&self, authorization: Option<&str>) -> bool {
        self.authenticate(authorization).allowed()
    }

    /// Checks the `Authorization` header value (if any).
    pub fn authenticate(&self, authorization: Option<&str>) -> AuthResult {
        let Some(creds) = authorization.and_then(parse_basic) else {
            return AuthResult::Missing;
        };
        let (hash, known) = match self.users.get(&creds.user) {
            Some(h) => (h.expose(), true),
            None => (self.dummy.as_str(), false),
        };
        let digest = self.digest(&creds.user, &creds.password, hash);
        let ok = match self.cached(&digest) {
            Some(ok) => ok,
            None => {
                let Ok(_turn) = self.checks.enter(Some(CHECK_WAIT)) else {
                    return AuthResult::Busy;
                };
                // Another worker may have verified the same credentials while we waited.
                match self.cached(&digest) {
                    Some(ok) => ok,
                    None => {
                        // bcrypt runs for unknown users too (against the dummy), and first:
                        // `known && verify(..)` would skip it and make unknown users fast.
                        let verified = bcrypt::verify(&creds.password[..], hash).unwrap_or(false);
                        let ok = verified && known;
                        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(digest, ok);
                        ok
                    }
                }
            }
        };
        if ok && known {
            AuthResult::Allowed { user: creds.user.clone() }
        } else {
            AuthResult::Denied { user: creds.user.clone() }
        }
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<bool> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(digest)
    }

    /// HMAC-SHA256 over (user, password, hash), each part length-prefixed so no two triples
    /// encode alike (a password may contain NUL or ':').
    fn digest(&self, user: &str, password: &[u8], hash: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [user.as_bytes(), password, hash.as_bytes()] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part);
            ctx.update(&[0]);
        }
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    #[cfg(test)]
    /// Cached results (for tests and the exporter's own metrics).
    pub fn cache_len(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether both verifiers were built from the same users and hashes, so a reload can keep
    /// the warm cache.
    pub fn same_users(&self, users: &BTreeMap<String, Secret>) -> bool {
        self.users == *users
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// bcrypt of "secret" at cost 4 (fast tests), made with `bcrypt::hash`.
    fn users(pairs: &[(&str, &str)], cost: u32) -> BTreeMap<String, Secret> {
        pairs.iter().map(|(u, p)| (u.to_string(), Secret::new(bcrypt::hash(p, cost).unwrap()))).collect()
    }

    fn header(user: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    }

    #[test]
    fn parses_like_go() {
        let c = parse_basic(&header("alice", "pa:ss word")).unwrap();
        assert_eq!((c.user.as_str(), &c.password[..]), ("alice", &b"pa:ss word"[..]));
        assert!(parse_basic(&header("alice", "x").replace("Basic", "bAsIc")).is_some());
        assert!(parse_basic("Bearer abc").is_none());
        assert!(parse_basic("Basic").is_none());
        assert!(parse_basic("Basic !!!").is_none());
        // No colon.
        assert!(parse_basic(&format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice"))).is_none());
        // Empty user and password are valid syntax.
        let c = parse_basic(&header("", "")).unwrap();
        assert!(c.user.is_empty() && c.password.is_empty());
        assert!(!format!("{:?}", parse_basic(&header("u", "hunter2")).unwrap()).contains("hunter2"));
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(&[], &[]));
    }

    #[test]
    fn checks_and_caches() {
        let auth = BasicAuth::new(&users(&[("alice", "secret"), ("bob", "other")], 4));
        assert_eq!(auth.authenticate(None), AuthResult::Missing);
        assert_eq!(auth.authenticate(Some("Basic !!")), AuthResult::Missing);
        assert!(auth.check(Some(&header("alice", "secret"))));
        assert_eq!(auth.cache_len(), 1);
        // A hit does not add an entry.
        assert!(auth.check(Some(&header("alice", "secret"))));
        assert_eq!(auth.cache_len(), 1);
        // Failures are cached too.
        assert_eq!(auth.authenticate(Some(&header("alice", "wrong"))), AuthResult::Denied { user: "alice".into() });
        assert!(!auth.check(Some(&header("alice", "wrong"))));
        assert_eq!(auth.cache_len(), 2);
        // One user's password does not open another user.
        assert!(!auth.check(Some(&header("bob", "secret"))));
        assert!(auth.check(Some(&header("bob", "other"))));
        // Unknown users are refused, even with the dummy hash's own password.
        assert!(!auth.check(Some(&header("mallory", "secret"))));
        assert!(!auth.check(Some(&header("mallory", "fakepassword"))));
    }

    #[test]
    fn a_flood_of_unchecked_credentials_is_refused_at_once_and_cached_ones_pass() {
        let auth = Arc::new(BasicAuth::new(&users(&[("alice", "secret")], 4)));
        assert!(auth.check(Some(&header("alice", "secret"))), "cached from now on");
        // Every turn taken, every place in the queue filled by checks of wrong passwords.
        let turn = auth.checks.enter(None).unwrap();
        let waiting: Vec<_> = (0..CHECKS_WAITING)
            .map(|i| {
                let auth = auth.clone();
                std::thread::spawn(move || auth.authenticate(Some(&header("alice", &format!("wrong{i}")))))
            })
            .collect();
        while auth.checks.waiting() < CHECKS_WAITING {
            std::thread::yield_now();
        }
        assert_eq!(auth.authenticate(Some(&header("mallory", "x"))), AuthResult::Busy);
        assert_eq!(auth.authenticate(Some(&header("alice", "other"))), AuthResult::Busy);
        assert!(auth.check(Some(&header("alice", "secret"))), "a cached credential never waits for a turn");
        drop(turn);
        for w in waiting {
            assert_eq!(w.join().unwrap(), AuthResult::Denied { user: "alice".into() });
        }
        // Once the flood is over, credentials are checked again.
        assert_eq!(auth.authenticate(Some(&header("alice", "other"))), AuthResult::Denied { user: "alice".into() });
        assert_eq!(auth.checks.held(), 0);
    }

    fn digest(i: usize) -> [u8; 32] {
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&(i as u64).to_le_bytes());
        d
    }

    #[test]
    fn cache_is_bounded() {
        let mut cache = Cache::default();
        for i in 0..CACHE_CAPACITY + 50 {
            cache.insert(digest(i), false);
        }
        assert_eq!(cache.len(), CACHE_CAPACITY);
        // The oldest went first.
        assert!(cache.get(&digest(0)).is_none());
        assert_eq!(cache.get(&digest(CACHE_CAPACITY + 49)), Some(false));
        // Same index, different digest: a miss, not a false answer.
        let mut other = digest(CACHE_CAPACITY + 49);
        other[31] = 1;
        assert_eq!(cache.get(&other), None);
    }

    #[test]
    fn failures_never_evict_successes() {
        let mut cache = Cache::default();
        cache.insert(digest(usize::MAX), true);
        for i in 0..3 * CACHE_CAPACITY {
            cache.insert(digest(i), false);
        }
        assert_eq!(cache.get(&digest(usize::MAX)), Some(true));
        assert_eq!(cache.len(), CACHE_CAPACITY + 1);
    }

    #[test]
    fn unknown_users_cost_a_bcrypt() {
        // Cost 8 so the difference from a cache hit is unmistakable without timing asserts on
        // tight margins: a miss for an unknown user must not return in microseconds.
        let auth = BasicAuth::new(&users(&[("alice", "secret")], 8));
        assert!(auth.dummy.starts_with("$2y$08$"));
        assert!(validate_hash(&auth.dummy).is_ok());
        let t = Instant::now();
        assert!(!auth.check(Some(&header("nobody", "x"))));
        assert!(t.elapsed().as_micros() > 1000, "{:?}", t.elapsed());
    }

    #[test]
    fn hash_validation() {
        assert_eq!(validate_hash("$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"), Ok(10));
        assert_eq!(validate_hash("$2b$12$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"), Ok(12));
        for bad in ["", "secret", "$2y$10$short", "$2y$03$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"] {
            let e = validate_hash(bad).unwrap_err();
            assert!(!bad.is_empty() && !e.contains(bad) || bad.is_empty(), "{e}");
        }
    }

    #[test]
    fn debug_hides_hashes() {
        let u = users(&[("alice", "secret")], 4);
        let auth = BasicAuth::new(&u);
        let shown = format!("{auth:?} {u:?}");
        assert!(shown.contains("alice") && !shown.contains("$2"), "{shown}");
    }

    /// `cargo test --release --lib web::auth::tests::bcrypt_timings -- --ignored --nocapture`
    #[test]
    #[ignore = "prints timing figures; run by hand"]
    fn bcrypt_timings() {
        for cost in [10, 12] {
            let hash = bcrypt::hash("secret", cost).unwrap();
            let n = if cost == 10 { 10 } else { 4 };
            let t = Instant::now();
            for _ in 0..n {
                assert!(bcrypt::verify("secret", &hash).unwrap());
            }
            let per = t.elapsed() / n;
            let u: BTreeMap<String, Secret> = [("alice".to_string(), Secret::new(hash))].into();
            let auth = BasicAuth::new(&u);
            let h = header("alice", "secret");
            assert!(auth.check(Some(&h)));
            let hits = 100_000;
            let t = Instant::now();
            for _ in 0..hits {
                assert!(auth.check(Some(&h)));
            }
            let hit = t.elapsed() / hits;
            println!("bcrypt cost {cost}: verify {per:?} per call; cached check {hit:?} per call");
        }
    }
}
