//! Errors as log lines: an error and its causes on one line.
//!
//! The convention for the crate's error types: `Display` says what went wrong at that level and
//! may quote its direct cause (so `to_string()` alone is a complete message, as the one-line
//! exit-2 errors and the tests rely on); `source()` returns that cause, whose own `source()`
//! goes on down. [`chain`] walks the whole list and adds each cause the line does not already
//! contain, so deeper causes (an OS error under an I/O error, a certificate problem under a TLS
//! error) reach the log without any level being repeated.

use std::error::Error;

/// Most causes followed: a chain is a handful deep; this only bounds a pathological one.
const MAX_DEPTH: usize = 16;

/// `error: cause: deeper cause` on one line (line breaks become spaces). Causes whose text the
/// line already holds are skipped. Errors never hold the API token (it travels only in a
/// request header), so neither does this.
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut next = error.source();
    for _ in 0..MAX_DEPTH {
        let Some(cause) = next else {
            break;
        };
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Level(&'static str, Option<Box<Level>>);

    impl fmt::Display for Level {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Level {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn Error + 'static))
        }
    }

    fn level(text: &'static str, cause: Option<Level>) -> Level {
        Level(text, cause.map(Box::new))
    }

    #[test]
    fn adds_each_cause_not_already_quoted() {
        let os = level("connection refused (os error 111)", None);
        let io = level("connection refused (os error 111)", Some(os));
        let top = level("request failed: connection refused (os error 111)", Some(io));
        assert_eq!(chain(&top), "request failed: connection refused (os error 111)");

        let deep = level("UnknownIssuer", None);
        let tls = level("invalid peer certificate", Some(deep));
        let top = level("request failed", Some(tls));
        assert_eq!(chain(&top), "request failed: invalid peer certificate: UnknownIssuer");
    }

    #[test]
    fn stays_on_one_line() {
        let cause = level("line one\nline two\r", None);
        let top = level("bad", Some(cause));
        assert_eq!(chain(&top), "bad: line one line two ");
        let io = std::io::Error::other("a\nb");
        assert_eq!(chain(&io), "a b");
    }
}
