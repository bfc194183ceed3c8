//! URL text helpers shared by the API client (pagination links) and the HTTP side (query
//! strings).

/// Decodes `%XX` escapes (what Go's `url.QueryUnescape` does to the Link target before the
/// Go exporter follows it), leaving malformed escapes as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_is_lenient() {
        assert_eq!(percent_decode("a%5Bb%5d%zz%"), "a[b]%zz%");
    }
}
