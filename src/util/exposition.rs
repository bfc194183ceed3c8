//! Prometheus text exposition primitives shared by the table (which pre-renders row labels
//! once) and the renderer (which streams them): escaping and number formatting.

pub use super::number::{put, write_f64};

/// Appends a label value escaped for the text format (`\\`, `\"`, `\n`).
///
/// Service names come from the API and may contain anything; escaping here is what keeps one
/// odd name from breaking the whole scrape.
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `name="value"` with the value escaped.
pub fn push_label(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    escape_label_value(out, value);
    out.push('"');
}

/// Escapes `# HELP` text (`\\` and `\n`; quotes stay as they are).
pub fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        push_label(&mut s, "service_name", "a\"b\\c\nd 😀");
        assert_eq!(s, r#"service_name="a\"b\\c\nd 😀""#);
    }

    #[test]
    fn help_is_escaped() {
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
    }
}
