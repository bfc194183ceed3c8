//! The `-config-file` format: one `flag value` per line, as read by the Go
//! exporter (peterbourgon/ff's plain parser), so existing files keep working.

use std::path::Path;

use super::ConfigError;
use super::args::{Layer, shown_name};
use super::flags::{CONFIG_FILE, Kind, lookup};

/// Reads and parses a config file. Errors name the file (and line), never the
/// file's contents beyond a flag name, since the file usually holds the token.
pub(crate) fn read(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::caused(format!("cannot read config file {}: {e}", path.display()), e))?;
    parse(&text, &path.display().to_string())
}

/// Parses config file text; `origin` is the file name used in errors.
///
/// Lines are `name value` (value = rest of the line, trimmed) or `name=value`;
/// the name may carry `-`/`--`. `#` starts a comment line. A boolean flag
/// alone on a line means true; repeatable flags may appear on many lines.
pub(crate) fn parse(text: &str, origin: &str) -> Result<Layer, ConfigError> {
    let mut layer = Layer::default();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = match line.find(char::is_whitespace) {
            Some(at) => (&line[..at], Some(line[at..].trim())),
            None => (line, None),
        };
        let (name, value) = match word.split_once('=') {
            // `name=value with spaces`: the value runs to the end of line.
            Some((n, _)) => (n, Some(line[n.len() + 1..].trim())),
            None => (word, rest),
        };
        let name = name.strip_prefix("--").or_else(|| name.strip_prefix('-')).unwrap_or(name);
        let at = || format!("in config file {origin} line {line_no}");
        let flag =
            lookup(name).ok_or_else(|| ConfigError::new(format!("unknown flag {} {}", shown_name(name), at())))?;
        match flag.kind {
            Kind::Action(_) => {
                return Err(ConfigError::new(format!(
                    "-{} is only valid on the command line, not {}",
                    flag.name,
                    at()
                )));
            }
            _ if flag.is(&CONFIG_FILE) => {
                return Err(ConfigError::new(format!("-config-file cannot be nested {}", at())));
            }
            Kind::Bool => layer.push(flag, value.unwrap_or("true")),
            _ => match value {
                Some(v) => layer.push(flag, v),
                None => {
                    return Err(ConfigError::new(format!("missing value for -{} {}", flag.name, at())));
                }
            },
        }
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::super::flags::{AGGREGATE_ONLY, DEBUG, LISTEN, NAMESPACE, SERVICE, TOKEN};
    use super::*;

    fn err(text: &str) -> String {
        parse(text, "x.conf").unwrap_err().to_string()
    }

    #[test]
    fn parses_lines() {
        let layer = parse(
            "# comment\n\n  token   abc def  \n-debug\n--aggregate-only false\n\
             service A\nservice B\nlisten=:9000\n\t# indented comment\nnamespace= spaced value\n",
            "x.conf",
        )
        .unwrap();
        assert_eq!(layer.values(&TOKEN), vec!["abc def"]);
        assert_eq!(layer.values(&DEBUG), vec!["true"]);
        assert_eq!(layer.values(&AGGREGATE_ONLY), vec!["false"]);
        assert_eq!(layer.values(&SERVICE), vec!["A", "B"]);
        assert_eq!(layer.values(&LISTEN), vec![":9000"]);
        assert_eq!(layer.values(&NAMESPACE), vec!["spaced value"]);
    }

    #[test]
    fn errors_name_file_and_line() {
        assert_eq!(err("debug\nfoo bar\n"), "unknown flag -foo in config file x.conf line 2");
        assert_eq!(err("\nlisten\n"), "missing value for -listen in config file x.conf line 2");
        assert!(err("version\n").contains("only valid on the command line"));
        assert!(err("config-file other.conf\n").contains("line 1"));
        // A bare token on a line must not be echoed back.
        let e = err("Zx9aQ3kLm8Pq2Rt7Vw4Yb6Nc1Df5Gh0\n");
        assert!(!e.contains("Zx9aQ3"), "{e}");
        assert!(e.contains("line 1"));
    }

    #[test]
    fn unreadable_file_is_named() {
        let e = read(Path::new("/nonexistent/dir/fastly.conf")).unwrap_err().to_string();
        assert!(e.starts_with("cannot read config file /nonexistent/dir/fastly.conf"));
        assert!(!e.contains('\n'));
    }
}
