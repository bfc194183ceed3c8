//! Go-syntax durations (`time.ParseDuration`), so that every value accepted by
//! the Go exporter's flags is accepted here unchanged.

use std::time::Duration;

/// Largest duration Go can represent (`math.MaxInt64` nanoseconds); we reject
/// anything larger so a value never means something different from Go.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration such as `300ms`, `1.5h` or `1m30s`.
///
/// Follows `time.ParseDuration` except that negative values are refused: no
/// flag of the exporter has a meaning for them, so `-1s` is reported rather
/// than silently turned into something else. The error is a short reason
/// meant to be appended to a message that already names the flag and value.
pub(crate) fn parse(input: &str) -> Result<Duration, String> {
    let mut s = input;
    if let Some(rest) = s.strip_prefix('-')
        && !rest.is_empty()
    {
        return Err("negative durations are not allowed".to_string());
    }
    if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(format!("invalid duration {input:?}"));
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let (int_digits, rest) = split_digits(s);
        let (frac_digits, rest) = match rest.strip_prefix('.') {
            Some(after_dot) => split_digits(after_dot),
            None => ("", rest),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(format!("invalid duration {input:?}"));
        }
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!("missing unit in duration {input:?} (use ns, us, ms, s, m or h)"));
        }
        let scale = unit_nanos(unit).ok_or_else(|| format!("unknown unit {unit:?} in duration {input:?}"))?;
        total += component_nanos(int_digits, frac_digits, scale)
            .ok_or_else(|| format!("duration {input:?} is too large"))?;
        if total > MAX_NANOS {
            return Err(format!("duration {input:?} is too large"));
        }
        s = rest;
    }
    let nanos = u64::try_from(total).map_err(|_| format!("duration {input:?} is too large"))?;
    Ok(Duration::from_nanos(nanos))
}

/// Splits off the leading ASCII digits of `s`.
fn split_digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// Nanoseconds per unit, including both spellings of the micro sign that Go
/// accepts (U+00B5 and U+03BC).
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

/// Value of one `int.frac` component in nanoseconds; like Go, fractions finer
/// than a nanosecond are truncated. `None` means overflow.
fn component_nanos(int_digits: &str, frac_digits: &str, scale: u128) -> Option<u128> {
    let mut int: u128 = 0;
    for d in int_digits.bytes() {
        int = int.checked_mul(10)?.checked_add(u128::from(d - b'0'))?;
        if int > MAX_NANOS {
            return None;
        }
    }
    let mut value = int.checked_mul(scale)?;
    let mut place = scale;
    for d in frac_digits.bytes() {
        place /= 10;
        if place == 0 {
            break;
        }
        value += u128::from(d - b'0') * place;
    }
    Some(value)
}

/// Formats a duration compactly (`10m`, `1h30m`, `1.5s`, `300ms`) for
/// warnings and help text, where Go's `10m0s` style is needlessly noisy.
pub(crate) fn format(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    let nanos = d.as_nanos();
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}us", trim_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos, 1_000_000));
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let sub = u128::from(d.subsec_nanos());
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || sub > 0 {
        out.push_str(&trim_fraction(u128::from(s) * 1_000_000_000 + sub, 1_000_000_000));
        out.push('s');
    }
    out
}

/// `value / unit` as a decimal without trailing zeros, e.g. `1.5`.
fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_go_durations() {
        let cases: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("300ms", ms(300)),
            ("90s", Duration::from_secs(90)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5h", Duration::from_secs(5400)),
            ("6h", Duration::from_secs(6 * 3600)),
            ("10m", Duration::from_secs(600)),
            (".5s", ms(500)),
            ("5.s", Duration::from_secs(5)),
            ("+5s", Duration::from_secs(5)),
            ("1h2m3s4ms5us6ns", Duration::new(3723, 4_005_006)),
            ("3\u{b5}s", Duration::from_micros(3)),
            ("3\u{3bc}s", Duration::from_micros(3)),
            ("7us", Duration::from_micros(7)),
            ("15ns", Duration::from_nanos(15)),
            ("1.0000000009s", Duration::from_secs(1)),
            ("2562047h", Duration::from_secs(2_562_047 * 3600)),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), Ok(*want), "input {input:?}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for input in [
            "", "5", "1x", "-1s", "-0s", "s", ".s", "1.5", "1m30", "1 m", " 1s", "1s ", "-", "+", "1h-1m", "3000000h",
            "1..5s",
        ] {
            assert!(parse(input).is_err(), "input {input:?} should fail");
        }
        assert_eq!(parse("-1s"), Err("negative durations are not allowed".to_string()));
        assert!(parse("1x").unwrap_err().contains("unknown unit \"x\""));
        assert!(parse("5").unwrap_err().contains("missing unit"));
    }

    #[test]
    fn formats_compactly() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(24 * 3600), "24h"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_secs(3601), "1h1s"),
            (ms(1500), "1.5s"),
            (ms(300), "300ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_nanos(7), "7ns"),
        ];
        for (d, want) in cases {
            assert_eq!(format(*d), *want);
            assert_eq!(parse(want), Ok(*d), "format output must parse back");
        }
    }
}
