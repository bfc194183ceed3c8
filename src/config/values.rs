//! Parsers for the non-trivial flag values. Each returns a short reason on
//! failure; the caller wraps it into a message naming the flag and value.

/// `-service-shard n/m`: this exporter handles shard `n` of `m` (1-based, as
/// in the Go exporter, so existing deployments keep their shard numbers).
pub(crate) fn shard(s: &str) -> Result<(u64, u64), String> {
    let bad = || "want n/m, e.g. 1/3".to_string();
    let (n, m) = s.split_once('/').ok_or_else(bad)?;
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    let m: u64 = m.trim().parse().map_err(|_| bad())?;
    if m == 0 {
        return Err("m must be at least 1".to_string());
    }
    if n == 0 || n > m {
        return Err("n must be between 1 and m".to_string());
    }
    Ok((n, m))
}

/// `-service-shard-ordinal <ordinal>/m`: shard `ordinal + 1` of `m`, so a StatefulSet's pods
/// (ordinals 0..m-1) cover shards 1..m with identical arguments. `<ordinal>` is a number (the
/// `apps.kubernetes.io/pod-index` label) or a pod name whose last `-` is followed by the
/// ordinal (`metadata.name`); pod names cannot contain `/`, so the last `/` splits the value.
///
/// Every way a pod can get this wrong is refused rather than guessed, because a wrong guess
/// silently exports another pod's shard (duplicates) and leaves a shard nobody exports: an
/// empty ordinal (unset variable), a `$(VAR)` the kubelet left unexpanded (variable not
/// defined before use), a name without an ordinal suffix (a Deployment's pod), and an ordinal
/// not below `m` (the StatefulSet scaled past its shard count).
pub(crate) fn shard_from_ordinal(s: &str) -> Result<(u64, u64), String> {
    let bad = || "want <ordinal>/m, e.g. 0/3 or fastly-exporter-0/3".to_string();
    let (who, m) = s.rsplit_once('/').ok_or_else(bad)?;
    let m: u64 = m.trim().parse().map_err(|_| bad())?;
    if m == 0 {
        return Err("m must be at least 1".to_string());
    }
    let who = who.trim();
    if who.contains("$(") {
        return Err("the ordinal is an unexpanded $(VAR): define that variable in the pod's env".to_string());
    }
    if who.is_empty() {
        return Err("the ordinal is empty (is the variable that should hold it set?)".to_string());
    }
    let digits =
        if who.bytes().all(|b| b.is_ascii_digit()) { who } else { who.rsplit_once('-').map_or("", |(_, d)| d) };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("no ordinal: want a number or a pod name ending in -<number>".to_string());
    }
    let k: u64 = digits.parse().map_err(|_| "the ordinal is too large".to_string())?;
    if k >= m {
        return Err(format!("ordinal {k} is not below the shard count {m} (more pods than shards?)"));
    }
    Ok((k + 1, m))
}

/// `-rt-max-body`: bytes, or a number with a binary (KiB/MiB/GiB, powers of
/// 1024) or decimal (KB/MB/GB, powers of 1000) suffix, case-insensitive.
/// Zero is refused because it would reject every real-time response.
pub(crate) fn size(s: &str) -> Result<u64, String> {
    let bad = || "want a byte count, optionally with a KiB/MiB/GiB or KB/MB/GB suffix".to_string();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(digits_end);
    if digits.is_empty() {
        return Err(bad());
    }
    let multiplier: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let n: u64 = digits.parse().map_err(|_| "value is too large".to_string())?;
    let bytes = n.checked_mul(multiplier).ok_or_else(|| "value is too large".to_string())?;
    if bytes == 0 {
        return Err("must be greater than zero".to_string());
    }
    Ok(bytes)
}

/// `-web-max-connections`: a connection count from 1 to 1,000,000 (each open connection
/// costs a thread, so "unlimited" is not offered).
pub(crate) fn connections(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err("want a number of connections from 1 to 1000000".to_string()),
    }
}

/// `-listen`: requires `host:port`; a bare `:port` is rewritten to
/// `0.0.0.0:port` because Rust's listeners, unlike Go's, do not accept an
/// empty host.
pub(crate) fn listen(s: &str) -> Result<String, String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| "want host:port, e.g. 127.0.0.1:8080 or :8080".to_string())?;
    if port.parse::<u16>().is_err() {
        return Err("want host:port with a numeric port, e.g. 127.0.0.1:8080".to_string());
    }
    Ok(if host.is_empty() { format!("0.0.0.0:{port}") } else { s.to_string() })
}

/// Deprecated `-endpoint http://host:port/metrics`: only the `host:port` is
/// kept; the path is ignored (metrics are always served on the usual path).
pub(crate) fn listen_from_endpoint(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    let rest = ["http://", "https://"].iter().find(|p| lower.starts_with(*p)).map_or(s, |p| &s[p.len()..]);
    let host_port = rest.split('/').next().unwrap_or("");
    listen(host_port).map_err(|_| "want a URL like http://0.0.0.0:8080/metrics".to_string())
}

/// `-api-endpoint` / `-rt-endpoint`: an absolute http(s) base URL. Trailing
/// slashes are stripped so callers can append paths that start with `/`.
pub(crate) fn base_url(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    let scheme_len = ["http://", "https://"]
        .iter()
        .find(|p| lower.starts_with(*p))
        .map(|p| p.len())
        .ok_or_else(|| "must start with http:// or https://".to_string())?;
    let trimmed = s.trim_end_matches('/');
    if trimmed.len() <= scheme_len {
        return Err("missing host".to_string());
    }
    Ok(trimmed.to_string())
}

/// `-namespace` / `-subsystem`: must be usable as a Prometheus metric name
/// prefix, otherwise every exposed line would be invalid. Empty is allowed
/// (that part is then left out of metric names).
pub(crate) fn metric_name_part(s: &str) -> Result<String, String> {
    let ok = s.chars().enumerate().all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    if ok {
        Ok(s.to_string())
    } else {
        Err("must be letters, digits and underscores, not starting with a digit".to_string())
    }
}

/// Compiles a filter regex (unanchored, like Go's `regexp.MatchString`),
/// condensing the regex crate's multi-line error into one line.
pub(crate) fn regex(s: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(s).map_err(|e| {
        let text = e.to_string();
        match text.lines().find_map(|l| l.trim_start().strip_prefix("error:")) {
            Some(reason) => reason.trim().to_string(),
            None => text.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards() {
        assert_eq!(shard("1/3"), Ok((1, 3)));
        assert_eq!(shard("3/3"), Ok((3, 3)));
        assert_eq!(shard(" 2 / 5 "), Ok((2, 5)));
        assert_eq!(shard("4/3"), Err("n must be between 1 and m".into()));
        assert_eq!(shard("0/3"), Err("n must be between 1 and m".into()));
        assert_eq!(shard("1/0"), Err("m must be at least 1".into()));
        for bad in ["", "1", "1/", "/3", "a/b", "1/3/5", "-1/3", "1.5/3"] {
            assert!(shard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_from_ordinals() {
        assert_eq!(shard_from_ordinal("0/3"), Ok((1, 3)));
        assert_eq!(shard_from_ordinal("2/3"), Ok((3, 3)));
        assert_eq!(shard_from_ordinal("0/1"), Ok((1, 1)));
        assert_eq!(shard_from_ordinal("fastly-exporter-0/3"), Ok((1, 3)));
        assert_eq!(shard_from_ordinal("fastly-exporter-2/3"), Ok((3, 3)));
        assert_eq!(shard_from_ordinal("my-release-fastly-exporter-11/12"), Ok((12, 12)));
        assert_eq!(shard_from_ordinal(" web-1 / 2 "), Ok((2, 2)));
        let err = |s: &str| shard_from_ordinal(s).unwrap_err();
        assert_eq!(err("3/3"), "ordinal 3 is not below the shard count 3 (more pods than shards?)");
        assert_eq!(err("fastly-exporter-5/3"), "ordinal 5 is not below the shard count 3 (more pods than shards?)");
        assert_eq!(err("/3"), "the ordinal is empty (is the variable that should hold it set?)");
        assert_eq!(err("$(POD_NAME)/3"), "the ordinal is an unexpanded $(VAR): define that variable in the pod's env");
        assert_eq!(err("0/0"), "m must be at least 1");
        for none in ["fastly-exporter/3", "fastly-exporter-/3", "fastly-exporter-7c9d-x/3", "abc/3", "-/3"] {
            assert_eq!(err(none), "no ordinal: want a number or a pod name ending in -<number>", "{none}");
        }
        for bad in ["", "0", "3", "0/", "0/x", "0/-1", "0/1.5", "a/b/c"] {
            assert!(shard_from_ordinal(bad).is_err(), "{bad}");
        }
        assert_eq!(err("99999999999999999999/3"), "the ordinal is too large");
        // Consecutive ordinals cover every shard exactly once.
        let got: Vec<_> = (0..5).map(|k| shard_from_ordinal(&format!("sts-{k}/5")).map(|s| s.0)).collect();
        assert_eq!(got, [Ok(1), Ok(2), Ok(3), Ok(4), Ok(5)]);
    }

    #[test]
    fn sizes() {
        let cases = [
            ("33554432", 33_554_432),
            ("32MiB", 33_554_432),
            ("32mib", 33_554_432),
            ("32 MiB", 33_554_432),
            ("1KiB", 1024),
            ("1kb", 1000),
            ("2MB", 2_000_000),
            ("1GiB", 1 << 30),
            ("1GB", 1_000_000_000),
            ("100b", 100),
            ("1", 1),
        ];
        for (input, want) in cases {
            assert_eq!(size(input), Ok(want), "{input}");
        }
        for bad in ["0", "0MiB", "", "MiB", "1.5MiB", "-1", "10 TiB", "1x", "99999999999999999999"] {
            assert!(size(bad).is_err(), "{bad}");
        }
        assert!(size("18446744073709551615GiB").is_err());
    }

    #[test]
    fn listens() {
        assert_eq!(listen(":8080"), Ok("0.0.0.0:8080".into()));
        assert_eq!(listen("127.0.0.1:9000"), Ok("127.0.0.1:9000".into()));
        assert_eq!(listen("[::1]:9000"), Ok("[::1]:9000".into()));
        assert!(listen("8080").is_err());
        assert!(listen("host:").is_err());
        assert!(listen("host:http").is_err());
        assert_eq!(listen_from_endpoint("http://0.0.0.0:8080/metrics"), Ok("0.0.0.0:8080".into()));
        assert_eq!(listen_from_endpoint("HTTPS://:9000"), Ok("0.0.0.0:9000".into()));
        assert_eq!(listen_from_endpoint("host:1/x"), Ok("host:1".into()));
        assert!(listen_from_endpoint("http://0.0.0.0/metrics").is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(base_url("https://api.fastly.com/"), Ok("https://api.fastly.com".into()));
        assert_eq!(base_url("http://127.0.0.1:1234//"), Ok("http://127.0.0.1:1234".into()));
        assert_eq!(base_url("HTTP://x/api"), Ok("HTTP://x/api".into()));
        assert_eq!(base_url("ftp://x"), Err("must start with http:// or https://".into()));
        assert!(base_url("api.fastly.com").is_err());
        assert!(base_url("https://").is_err());
        assert!(base_url("https:///").is_err());
    }

    #[test]
    fn metric_names() {
        assert!(metric_name_part("fastly").is_ok());
        assert!(metric_name_part("").is_ok());
        assert!(metric_name_part("_a1").is_ok());
        assert!(metric_name_part("1a").is_err());
        assert!(metric_name_part("a-b").is_err());
    }

    #[test]
    fn regex_errors_are_one_line() {
        assert!(regex("^prod").is_ok());
        let e = regex("(").unwrap_err();
        assert_eq!(e, "unclosed group");
        assert!(!regex("a{99999}{99999}").unwrap_err().contains('\n'));
    }

    /// The regex crate is built with only the Unicode tables RE2 has syntax for (Cargo.toml):
    /// every such Go filter still compiles and matches as it does in Go.
    #[test]
    fn go_unicode_syntax_still_compiles() {
        assert!(regex(r"^\p{Greek}+$").is_ok_and(|r| r.is_match("αβγ")));
        assert!(regex(r"^\pL\p{Nd}$").is_ok_and(|r| r.is_match("é7")));
        assert!(regex(r"(?i)^ÉTÉ$").is_ok_and(|r| r.is_match("été")));
        assert!(regex(r"^\w+\s\d$").is_ok_and(|r| r.is_match("prod 1")));
    }
}
