//! The command-line and environment front ends of the flag registry (`flags.rs`).
//!
//! The command line is read in two steps. A small pre-pass ([`canonical`]) does what Go's
//! `flag` package decides and pico-args cannot know: it reads argv left to right and, by each
//! flag's kind, groups every flag with its value (a string flag takes the next argument
//! whatever it looks like; a boolean takes none, or a following `true`/`false`), accepts
//! single-dash long names and `-name=value`, stops at `-h` as Go does, and writes the result
//! in one canonical form. pico-args then reads that list: it finds each flag's key, takes its
//! values in order, and what it leaves over (unknown flags, stray arguments) is the error.
//! Why each part stays hand-written is in ARCHITECTURE.md ("Where we differ") and in the
//! tests below (`pico_args_alone_*`).

use std::ffi::OsString;

use super::ConfigError;
use super::flags::{Action, FLAGS, Flag, HELP, Kind, env_name, lookup};

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

/// argv in the one form pico-args reads unambiguously:
///
/// - a known flag is its key (`--name`, whatever dashes were typed) followed by its value as
///   one argument written `=value` (a bare boolean gets `=true`): no value can be taken for a
///   key, an empty value stays a value, and quotes stay part of it;
/// - an unknown flag is its key as typed (`--name`), and `=value` when one was given inline,
///   left for pico-args to report;
/// - an argument that is not a flag is `#N`, its position: never its text, which may be a
///   misplaced token;
/// - a flag spelled `---name` or `-=…` is `!name`.
///
/// `missing` is a flag typed last without its value (reported after anything before it).
struct Canonical {
    args: Vec<OsString>,
    missing: Option<&'static Flag>,
}

/// The pre-pass: Go's reading of argv, left to right (see the module documentation).
fn canonical(args: &[String]) -> Canonical {
    let mut out: Vec<OsString> = Vec::with_capacity(args.len() * 2);
    let value = |v: &str| OsString::from(format!("={v}"));
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        if arg == "--" {
            // Go stops reading flags here; whatever follows is positional.
            if i < args.len() {
                out.push(format!("#{}", i + 1).into());
            }
            break;
        }
        let body = match arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
            Some(body) if !body.is_empty() => body,
            _ => {
                out.push(format!("#{i}").into());
                continue;
            }
        };
        if body.starts_with('-') || body.starts_with('=') {
            out.push(format!("!{}", body.trim_start_matches(['-', '='])).into());
            continue;
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(flag) = lookup(name) else {
            out.push(format!("--{name}").into());
            out.extend(inline.map(value));
            continue;
        };
        let v = match (flag.kind, inline) {
            (_, Some(v)) => v,
            // Go reads `-debug` alone as true; we also take a following `true`/`false`.
            (Kind::Bool | Kind::Action(_), None) => match args.get(i).map(String::as_str) {
                Some(v @ ("true" | "True" | "TRUE" | "false" | "False" | "FALSE")) => {
                    i += 1;
                    v
                }
                _ => "true",
            },
            // Go takes the next argument as the value, even one that looks like a flag.
            (Kind::Str | Kind::Duration | Kind::List, None) => match args.get(i) {
                Some(v) => {
                    i += 1;
                    v
                }
                None => return Canonical { args: out, missing: Some(flag) },
            },
        };
        out.push(flag.key.into());
        out.push(value(v));
        if flag.is(&HELP) && parse_bool(v) == Some(true) {
            // Go's flag package returns at -h: nothing after it is read.
            break;
        }
    }
    Canonical { args: out, missing: None }
}

/// A canonical value (`=value`) without its mark.
fn unmark(v: &str) -> Result<String, &'static str> {
    v.strip_prefix('=').map(str::to_string).ok_or("not a value")
}

/// Reads argv (without argv\[0\]) Go-style but leniently: `-x v`, `-x=v`,
/// `--x v` and `--x=v` are all accepted, as is `-debug true`.
///
/// `-h`/`-help` ends the reading, like Go's flag package (what follows is not looked at); the
/// actions are returned only if what was read is valid. With several actions, help wins, then
/// `-version`, then `-config-file-example` (the order the Go exporter checks them in).
pub(crate) fn parse_argv(args: &[String]) -> Result<Parsed, ConfigError> {
    let Canonical { args, missing } = canonical(args);
    let mut pico = pico_args::Arguments::from_vec(args);
    let mut layer = Layer::default();
    for &flag in FLAGS {
        let values = pico
            .values_from_fn(flag.key, unmark)
            .map_err(|e| ConfigError::new(format!("cannot read -{}: {e}", flag.name)))?;
        for v in values {
            layer.push(flag, v);
        }
    }
    // What pico-args left is what no flag took: the first one, in command-line order, is the
    // error Go would have stopped at.
    if let Some(first) = pico.finish().first() {
        let first = first.to_string_lossy();
        return Err(match first.as_bytes().first() {
            Some(b'#') => positional(first[1..].parse().unwrap_or(0)),
            Some(b'!') => ConfigError::new(format!("bad flag syntax: {}", shown_name(&first[1..]))),
            _ => ConfigError::new(format!("unknown flag {}", shown_name(first.trim_start_matches('-')))),
        });
    }
    if let Some(flag) = missing {
        return Err(ConfigError::new(format!("missing value for -{}", flag.name)));
    }
    let mut on = Vec::new();
    for &flag in FLAGS {
        let Kind::Action(action) = flag.kind else { continue };
        for value in layer.values(flag) {
            match parse_bool(value) {
                Some(true) => on.push(action),
                Some(false) => {}
                None => {
                    return Err(ConfigError::new(format!("invalid boolean value {value:?} for -{}", flag.name)));
                }
            }
        }
    }
    for action in [Action::Help, Action::Version, Action::ConfigFileExample] {
        if on.contains(&action) {
            return Ok(Parsed::Action(action));
        }
    }
    layer.entries.retain(|e| !e.flag.is_action());
    Ok(Parsed::Flags(layer))
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

    /// pico-args alone, on the command line as typed (`pico_args_alone_*` below): what each
    /// hand-written part of [`canonical`] is for.
    fn pico(s: &[&str]) -> pico_args::Arguments {
        pico_args::Arguments::from_vec(s.iter().map(OsString::from).collect())
    }

    /// The canonical list of a command line, as text.
    fn canon(s: &[&str]) -> Vec<String> {
        canonical(&argv(s)).args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn the_pre_pass_writes_one_form_and_pico_args_reads_it() {
        assert_eq!(
            canon(&["-token", "T", "--namespace=", "-debug", "-listen", "-x", "stray", "-foo=1", "---bad"]),
            ["--token", "=T", "--namespace", "=", "--debug", "=true", "--listen", "=-x", "#7", "--foo", "=1", "!bad"]
        );
        assert_eq!(canon(&["-h", "-foo"]), ["--help", "=true"]);
        assert_eq!(canon(&["--", "x"]), ["#2"]);
        assert!(canonical(&argv(&["-debug", "-token"])).missing.is_some_and(|f| f.is(&TOKEN)));
        // What pico-args leaves over is the error, the first one typed first.
        let err = |s: &[&str]| parse_argv(&argv(s)).unwrap_err().to_string();
        assert_eq!(err(&["-token", "T", "-foo", "x"]), "unknown flag -foo");
        assert!(err(&["-token", "T", "x", "-foo"]).starts_with("unexpected argument #3"));
        assert_eq!(err(&["-foo", "-token"]), "unknown flag -foo");
    }

    /// Single-dash long names: pico-args asserts that a key after one dash is one character
    /// (a debug assertion: debug builds, which the tests use, refuse `-token`). The pre-pass
    /// writes every flag as `--name`.
    #[test]
    fn pico_args_alone_refuses_single_dash_long_names() {
        #[cfg(debug_assertions)]
        assert!(std::panic::catch_unwind(|| pico(&["-token", "T"]).contains("-token")).is_err());
        assert_eq!(flags(&["-token", "T"]).values(&TOKEN), vec!["T"]);
    }

    /// Whether the next argument is a flag's value depends on the flag's kind in Go: a string
    /// flag takes it even when it looks like a flag. pico-args looks every key up anywhere in
    /// argv, so it takes the value `--namespace` for the key: the pre-pass marks values.
    #[test]
    fn pico_args_alone_takes_a_value_spelled_like_a_flag_for_a_key() {
        let line = ["--namespace", "a", "--listen", "--namespace"];
        assert!(pico(&line).values_from_str::<_, String>("--namespace").is_err());
        assert_eq!(flags(&line).values(&LISTEN), vec!["--namespace"]);
        assert_eq!(flags(&line).values(&NAMESPACE), vec!["a"]);
    }

    /// A boolean takes no value in Go (we also take a following `true`/`false`); pico-args
    /// cannot know a key is a boolean, so `-debug false` leaves `false` over and `-debug
    /// SECRET` leaves a bare word it cannot place. The pre-pass decides.
    #[test]
    fn pico_args_alone_cannot_tell_a_booleans_value() {
        let mut p = pico(&["--debug", "false"]);
        assert!(p.contains("--debug"));
        assert_eq!(p.finish(), vec![OsString::from("false")]);
        assert_eq!(flags(&["--debug", "false"]).values(&DEBUG), vec!["false"]);
        assert_eq!(flags(&["--debug", "--aggregate-only"]).values(&DEBUG), vec!["true"]);
    }

    /// `-name=value`: with its `eq-separator` feature pico-args strips quotes from such a
    /// value and refuses an empty one (how `-token=` or `-subsystem=` clear a setting), and it
    /// prefers `--key value` to `--key=value`, so repeats mixing the forms come out of order.
    /// The pre-pass splits `=` itself; pico-args is used without the feature.
    #[test]
    fn pico_args_alone_misreads_inline_values() {
        // Without the feature pico-args does not split `=` at all: `--namespace=a` is left
        // over, and only `b` is read.
        let mut p = pico(&["--namespace=a", "--namespace", "b"]);
        assert_eq!(p.values_from_str::<_, String>("--namespace").unwrap(), vec!["b"]);
        assert_eq!(p.finish(), vec![OsString::from("--namespace=a")]);
        assert_eq!(flags(&["--namespace=a", "--namespace", "b"]).values(&NAMESPACE), vec!["a", "b"]);
        assert_eq!(flags(&["--namespace="]).values(&NAMESPACE), vec![""]);
        assert_eq!(flags(&["--namespace='x'"]).values(&NAMESPACE), vec!["'x'"]);
    }

    /// A stray argument: pico-args' leftovers carry no position and would have to be shown to
    /// say which one; the pre-pass writes `#N` in its place, so the error names the position
    /// and never the text (a misplaced token).
    #[test]
    fn pico_args_alone_cannot_say_where_a_stray_argument_was() {
        let mut p = pico(&["--debug", "SECRET"]);
        assert!(p.contains("--debug"));
        assert_eq!(p.finish(), vec![OsString::from("SECRET")]);
        let e = parse_argv(&argv(&["--debug", "SECRET"])).unwrap_err().to_string();
        assert!(e.starts_with("unexpected argument #2") && !e.contains("SECRET"), "{e}");
    }

    /// Go stops at `-h` (and at `--`): what follows is not read, so `-h -foo` is help and
    /// `-foo -h` an error. pico-args reads keys in any order; the pre-pass stops there.
    #[test]
    fn pico_args_alone_reads_past_help() {
        let mut p = pico(&["--help", "--foo"]);
        assert!(p.contains("--help"));
        assert_eq!(p.finish(), vec![OsString::from("--foo")]);
        assert!(matches!(parse_argv(&argv(&["--help", "--foo"])), Ok(Parsed::Action(Action::Help))));
        assert!(parse_argv(&argv(&["--foo", "--help"])).is_err());
    }
}
