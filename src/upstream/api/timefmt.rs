//! The few timestamp and number formats the account APIs use, parsed by hand (no date crate):
//! RFC 3339 (`2026-04-18T00:00:00Z`, fractions, offsets), Fastly's `2006-01-02 15:04:05` (UTC),
//! and decimal certificate serial numbers of any length converted to uppercase hex.

/// Unix seconds of an RFC 3339 timestamp, or of `YYYY-MM-DD HH:MM:SS` taken as UTC.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) { t.parse().ok() } else { None }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        "" if b[10] == b' ' => 0,
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let oh: i64 = o[1..3].parse().ok()?;
            let om: i64 = o[4..6].parse().ok()?;
            let v = oh * 3600 + om * 60;
            if o.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    Some(crate::util::civil::days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A decimal serial number of any length as uppercase hex without prefix (`255` → `FF`), the
/// way the Go exporter prints `big.Int` serials; `None` when it is not a decimal number.
pub fn decimal_to_hex(dec: &str) -> Option<String> {
    let dec = dec.trim();
    if dec.is_empty() || !dec.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut digits: Vec<u32> = dec.bytes().map(|c| u32::from(c - b'0')).collect();
    let mut hex = Vec::new();
    while digits.iter().any(|&d| d != 0) {
        let mut rem = 0;
        for d in digits.iter_mut() {
            let cur = rem * 10 + *d;
            *d = cur / 16;
            rem = cur % 16;
        }
        hex.push(b"0123456789ABCDEF"[rem as usize]);
        let zeros = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..zeros.min(digits.len().saturating_sub(1)));
    }
    if hex.is_empty() {
        hex.push(b'0');
    }
    hex.reverse();
    String::from_utf8(hex).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("2026-04-18T00:00:00Z"), Some(1_776_470_400));
        assert_eq!(parse_timestamp("2024-08-29 23:51:16"), Some(1_724_975_476));
        assert_eq!(parse_timestamp("2025-12-08 22:10:19"), Some(1_765_231_819));
        assert_eq!(parse_timestamp("2023-06-25T01:09:23.000Z"), Some(1_687_655_363));
        assert_eq!(parse_timestamp("2023-06-25T03:09:23+02:00"), Some(1_687_655_363));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2024-02-29T12:00:00Z"), Some(1_709_208_000));
        for bad in [
            "",
            "2024-02-30T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "yesterday",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn serials() {
        assert_eq!(decimal_to_hex("255").as_deref(), Some("FF"));
        assert_eq!(decimal_to_hex("0").as_deref(), Some("0"));
        assert_eq!(decimal_to_hex("4096").as_deref(), Some("1000"));
        // A 38-digit serial from the certificate fixture, checked against Python's hex().
        assert_eq!(
            decimal_to_hex("52135557897532112355784498781325912334").as_deref(),
            Some("2738F1765B2273CD3ACCA69D7554690E")
        );
        assert_eq!(decimal_to_hex("12a"), None);
    }
}
