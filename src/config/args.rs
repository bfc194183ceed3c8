//! The command-line and environment front ends of the flag registry (`flags.rs`).
//!
//! The command line is read left to right, as Go's `flag` package reads it: whether the
//! argument after a flag is its value depends on that flag's kind, so the reading is
//! sequential by nature. pico-args finds keys anywhere in argv, which reads some Go command
//! lines differently; the exact cases are in ARCHITECTURE.md ("Where we differ") and in
//! `tests::pico_args_reads_these_go_command_lines_differently`.

use super::ConfigError;
use super::flags::{Action, FLAGS, Flag, Kind, env_name, lookup};

/// Go `strconv.ParseBool`, so boolean values accepted by the Go exporter
/// behave identically.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Renders a flag name for an error message, withholding names that do not
/// look like a flag: a stray line or argument may well be a bare API token,
/// and the token must never reach a log. Flag-shaped names (lowercase words
/// and dashes, short, hardly any digits; Fastly tokens are 32 mixed-case
/// characters) are shown, with a suggestion when one is close.
pub(crate) fn shown_name(name: &str) -> String {
    let shaped = name.len() <= 24
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().filter(u8::is_ascii_digit).count() <= 2;
    if !shaped {
        return "(name not shown: it does not look like a flag)".to_string();
    }
    match FLAGS.iter().map(|f| (edit_distance(name, f.name), f.name)).min() {
        Some((d, flag)) if d <= 2 && d < name.len() => format!("-{name} (did you mean -{flag}?)"),
        _ => format!("-{name}"),
    }
}

/// Levenshtein distance, for flag-name suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<u8> = b.bytes().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// One `flag value` occurrence from some source.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub flag: &'static Flag,
    pub value: String,
}

/// All occurrences from one source (command line, environment or config
/// file), in order. Precedence is applied between layers, never inside one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layer {
    pub entries: Vec<Entry>,
}

impl Layer {
    pub(crate) fn push(&mut self, flag: &'static Flag, value: impl Into<String>) {
        self.entries.push(Entry { flag, value: value.into() });
    }

    /// Every value given for `flag` (under that name) in this layer, in order.
    pub(crate) fn values(&self, flag: &Flag) -> Vec<&str> {
        self.entries.iter().filter(|e| e.flag.is(flag)).map(|e| e.value.as_str()).collect()
    }
}

/// Result of reading argv: either an action to perform, or the flags given.
#[derive(Debug)]
pub(crate) enum Parsed {
    Action(Action),
    Flags(Layer),
}

/// Reads argv (without argv\[0\]) Go-style but leniently: `-x v`, `-x=v`,
/// `--x v` and `--x=v` are all accepted, as is `-debug true`.
///
/// `-h`/`-help` returns as soon as it is seen, like Go's flag package; the
/// other actions are returned only if the whole command line is valid.
pub(crate) fn parse_argv(args: &[String]) -> Result<Parsed, ConfigError> {
    let mut layer = Layer::default();
    let mut action = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        if arg == "--" {
            // Go stops flag parsing here; everything after is positional.
            if i < args.len() {
                return Err(positional(i + 1));
            }
            break;
        }
        let body = match arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
            Some(body) if !body.is_empty() => body,
            _ => return Err(positional(i)),
        };
        if body.starts_with('-') || body.starts_with('=') {
            return Err(ConfigError::new(format!(
                "bad flag syntax: {}",
                shown_name(body.trim_start_matches(['-', '=']))
            )));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let flag = lookup(name).ok_or_else(|| ConfigError::new(format!("unknown flag {}", shown_name(name))))?;
        match flag.kind {
            Kind::Bool | Kind::Action(_) => {
                // Go reads `-debug` alone as true; we also take a following `true`/`false`.
                let value = match inline {
                    Some(v) => v,
                    None => match args.get(i).map(String::as_str) {
                        Some(v @ ("true" | "True" | "TRUE" | "false" | "False" | "FALSE")) => {
                            i += 1;
                            v
                        }
                        _ => "true",
                    },
                };
                let Kind::Action(this) = flag.kind else {
                    layer.push(flag, value);
                    continue;
                };
                let on = parse_bool(value)
                    .ok_or_else(|| ConfigError::new(format!("invalid boolean value {value:?} for -{}", flag.name)))?;
                if on && this == Action::Help {
                    return Ok(Parsed::Action(Action::Help));
                }
                if on && action.is_none() {
                    action = Some(this);
                }
            }
            Kind::Str | Kind::Duration | Kind::List => {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        let v =
                            args.get(i).ok_or_else(|| ConfigError::new(format!("missing value for -{}", flag.name)))?;
                        i += 1;
                        v.as_str()
                    }
                };
                layer.push(flag, value);
            }
        }
    }
    Ok(match action {
        Some(a) => Parsed::Action(a),
        None => Parsed::Flags(layer),
    })
}

/// Error for a non-flag argument. The argument itself is not echoed: a
/// misplaced token is the most likely stray argument.
fn positional(position: usize) -> ConfigError {
    ConfigError::new(format!("unexpected argument #{position}: flags take the form -name value"))
}

/// Collects `FASTLY_EXPORTER_*` (and, for the token, the extra variables).
/// Empty variables count as unset, so `docker run -e X=` does not override
/// a config file with an empty value.
pub(crate) fn env_layer(env: &dyn Fn(&str) -> Option<String>) -> Layer {
    let mut layer = Layer::default();
    for &flag in FLAGS {
        let Some(primary) = env_name(flag) else {
            continue;
        };
        let names = std::iter::once(primary.as_str()).chain(flag.extra_env.iter().copied());
        if let Some(value) = names.filter_map(env).find(|v| !v.trim().is_empty()) {
            layer.push(flag, value);
        }
    }
    layer
}

#[cfg(test)]
mod tests {
    use super::super::flags::{AGGREGATE_ONLY, DEBUG, LISTEN, NAMESPACE, SERVICE, TOKEN, VERSION};
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn flags(s: &[&str]) -> Layer {
        match parse_argv(&argv(s)) {
            Ok(Parsed::Flags(l)) => l,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    #[test]
    fn syntax_variants() {
        for args in [&["-token", "T"][..], &["-token=T"], &["--token", "T"], &["--token=T"]] {
            assert_eq!(flags(args).values(&TOKEN), vec!["T"], "{args:?}");
        }
        assert_eq!(flags(&["-listen=a=b"]).values(&LISTEN), vec!["a=b"]);
        assert_eq!(flags(&["-token="]).values(&TOKEN), vec![""]);
        // Go takes the next argument as the value even if it looks like a flag.
        assert_eq!(flags(&["-namespace", "-x"]).values(&NAMESPACE), vec!["-x"]);
    }

    #[test]
    fn bools() {
        assert_eq!(flags(&["-debug"]).values(&DEBUG), vec!["true"]);
        assert_eq!(flags(&["--debug=false"]).values(&DEBUG), vec!["false"]);
        assert_eq!(flags(&["-debug", "false"]).values(&DEBUG), vec!["false"]);
        assert_eq!(flags(&["-debug", "true", "-aggregate-only"]).values(&DEBUG), vec!["true"]);
        assert!(parse_argv(&argv(&["-debug", "yes"])).is_err());
        assert!(parse_argv(&argv(&["-debug", "1"])).is_err());
    }

    #[test]
    fn actions() {
        let act = |s: &[&str]| match parse_argv(&argv(s)) {
            Ok(Parsed::Action(a)) => Some(a),
            _ => None,
        };
        assert_eq!(act(&["-h"]), Some(Action::Help));
        assert_eq!(act(&["-help"]), Some(Action::Help));
        assert_eq!(act(&["--help"]), Some(Action::Help));
        assert_eq!(act(&["-foo", "-h"]), None);
        assert_eq!(act(&["-h", "-foo"]), Some(Action::Help));
        assert_eq!(act(&["-version"]), Some(Action::Version));
        assert_eq!(act(&["--version=true"]), Some(Action::Version));
        assert_eq!(act(&["-version=false"]), None);
        assert_eq!(act(&["-config-file-example"]), Some(Action::ConfigFileExample));
        assert_eq!(act(&["-version", "-foo"]), None);
    }

    #[test]
    fn errors() {
        let err = |s: &[&str]| parse_argv(&argv(s)).unwrap_err().to_string();
        assert_eq!(err(&["-foo"]), "unknown flag -foo");
        assert_eq!(err(&["--foo=1"]), "unknown flag -foo");
        assert_eq!(err(&["-token"]), "missing value for -token");
        assert_eq!(err(&["--service-shard"]), "missing value for -service-shard");
        assert!(err(&["stray"]).starts_with("unexpected argument #1"));
        assert!(err(&["-debug", "SECRET"]).starts_with("unexpected argument #2"));
        assert!(!err(&["-debug", "SECRET"]).contains("SECRET"));
        assert!(err(&["-", "x"]).starts_with("unexpected argument #1"));
        assert!(err(&["--", "x"]).starts_with("unexpected argument #2"));
        assert!(err(&["---token"]).starts_with("bad flag syntax"));
        assert!(err(&["-=x"]).starts_with("bad flag syntax"));
        let long = "-abcdefghijklmnopqrstuvwxyz0123456789";
        assert!(!err(&[long]).contains("abcdef"));
        assert!(parse_argv(&argv(&["--"])).is_ok());
    }

    #[test]
    fn env_layer_reads_every_flag_but_actions() {
        assert_eq!(env_name(&VERSION), None);
        let env = |k: &str| match k {
            "FASTLY_API_TOKEN" => Some("api".to_string()),
            "FASTLY_EXPORTER_AGGREGATE_ONLY" => Some("true".to_string()),
            "FASTLY_EXPORTER_SERVICE" => Some("a,b".to_string()),
            "FASTLY_EXPORTER_DEBUG" => Some(String::new()),
            _ => None,
        };
        let l = env_layer(&env);
        assert_eq!(l.values(&TOKEN), vec!["api"]);
        assert_eq!(l.values(&AGGREGATE_ONLY), vec!["true"]);
        assert_eq!(l.values(&SERVICE), vec!["a,b"]);
        assert!(l.values(&DEBUG).is_empty());
        let both = |k: &str| match k {
            "FASTLY_API_TOKEN" => Some("api".to_string()),
            "FASTLY_EXPORTER_TOKEN" => Some("exp".to_string()),
            _ => None,
        };
        assert_eq!(env_layer(&both).values(&TOKEN), vec!["exp"]);
    }

    /// Why the command line is not read by pico-args (ARCHITECTURE.md, "Where we differ"):
    /// pico-args looks each key up anywhere in argv, exact `--key` spellings before
    /// `--key=value` ones, while Go reads argv left to right and decides by the flag's kind
    /// whether the next argument is its value. Each case shows pico-args' reading beside ours;
    /// if pico-args ever reads one like Go, this test says so.
    #[test]
    fn pico_args_reads_these_go_command_lines_differently() {
        use std::ffi::OsString;
        let pico = |s: &[&str]| pico_args::Arguments::from_vec(s.iter().map(OsString::from).collect());
        let all = |s: &[&str], key: &'static str| pico(s).values_from_str::<_, String>(key);

        // A value that is spelled like a flag: Go gives -listen the value "--namespace".
        let line = ["--namespace", "a", "--listen", "--namespace"];
        assert!(all(&line, "--namespace").is_err());
        assert_eq!(flags(&line).values(&LISTEN), vec!["--namespace"]);
        assert_eq!(flags(&line).values(&NAMESPACE), vec!["a"]);

        // Repeats mixing `=` and space forms: the last one typed must win.
        let line = ["--namespace=a", "--namespace", "b"];
        assert_eq!(all(&line, "--namespace").unwrap(), vec!["b", "a"]);
        assert_eq!(flags(&line).values(&NAMESPACE), vec!["a", "b"]);

        // An empty `=` value (how `-token=` or `-subsystem=` clear a setting).
        assert!(all(&["--subsystem="], "--subsystem").is_err());
        assert_eq!(flags(&["--namespace="]).values(&NAMESPACE), vec![""]);

        // Quotes are part of a Go value; pico-args strips them.
        assert_eq!(all(&["--namespace='x'"], "--namespace").unwrap(), vec!["x"]);
        assert_eq!(flags(&["--namespace='x'"]).values(&NAMESPACE), vec!["'x'"]);

        // A boolean followed by its value as a separate word.
        let mut p = pico(&["--debug", "false"]);
        assert!(p.contains("--debug"));
        assert_eq!(p.finish(), vec![OsString::from("false")]);
        assert_eq!(flags(&["--debug", "false"]).values(&DEBUG), vec!["false"]);

        // A stray argument: pico-args' leftovers carry no position, ours names it.
        let mut p = pico(&["--debug", "SECRET"]);
        assert!(p.contains("--debug"));
        assert_eq!(p.finish().len(), 1);
        assert!(
            parse_argv(&argv(&["--debug", "SECRET"])).unwrap_err().to_string().starts_with("unexpected argument #2")
        );

        // Go's single-dash long keys: pico-args asserts that a single-dash key is one
        // character (a debug assertion, so only debug builds, which the tests use, refuse it).
        #[cfg(debug_assertions)]
        assert!(std::panic::catch_unwind(|| pico(&["-token", "T"]).contains("-token")).is_err());
        assert_eq!(flags(&["-token", "T"]).values(&TOKEN), vec!["T"]);
    }
}
