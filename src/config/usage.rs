//! Help text and example config file, both generated from the flag table so
//! they cannot drift from what the parser actually accepts.

use std::sync::OnceLock;

use super::flags::{FLAGS, Flag, Group, HELP, Kind, env_name};

/// Column at which text is wrapped.
const WIDTH: usize = 80;

/// Greedy word wrap; every output line starts with `indent`.
fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > WIDTH {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Like [`wrap`], but never splits an item (e.g. `[default: 10m]`).
fn pack(items: &[String], indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for item in items {
        if !line.is_empty() && indent.len() + line.len() + 1 + item.len() > WIDTH {
            out.push_str(&format!("{indent}{line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(item);
    }
    if !line.is_empty() {
        out.push_str(&format!("{indent}{line}\n"));
    }
    out
}

/// Flags of one group, in table order.
fn in_group(group: Group) -> impl Iterator<Item = &'static Flag> {
    FLAGS.iter().copied().filter(move |f| f.group == group)
}

/// Environment variables that set `flag`, primary first.
fn env_vars(flag: &Flag) -> Vec<String> {
    env_name(flag).into_iter().chain(flag.extra_env.iter().map(|s| s.to_string())).collect()
}

/// The `-h` text: every flag under its heading, with its default, clamp range
/// and environment variable, so operators never need the source to configure
/// the exporter.
pub fn usage() -> String {
    let mut out = String::from(
        "fastly-exporter: Prometheus exporter for the Fastly real-time analytics API.\n\n\
         USAGE\n  fastly-exporter [flags]\n\n",
    );
    out.push_str(&wrap(
        "Flags may be written -flag value, -flag=value, --flag value or --flag=value; \
         boolean flags may omit the value. Each flag can also be set by the environment \
         variable shown, or in a -config-file. Precedence: command line, then environment, \
         then config file, then default. Durations use Go syntax (90s, 1m30s, 1.5h).",
        "",
    ));
    for group in Group::ALL {
        out.push('\n');
        out.push_str(group.title());
        out.push('\n');
        for flag in in_group(group) {
            let names = if flag.is(&HELP) { "-h, -help".to_string() } else { format!("-{}", flag.name) };
            out.push_str(&format!("  {names}"));
            if !flag.arg.is_empty() {
                out.push_str(&format!(" {}", flag.arg));
            }
            if flag.kind == Kind::List {
                out.push_str("  (repeatable)");
            }
            out.push('\n');
            out.push_str(&wrap(flag.help, "        "));
            let mut facts = Vec::new();
            if !flag.default.is_empty() {
                facts.push(format!("[default: {}]", flag.default));
            }
            if !flag.min.is_empty() {
                facts.push(format!("[range: {}..{}]", flag.min, flag.max));
            }
            let env = env_vars(flag);
            if !env.is_empty() {
                facts.push(format!("[env: {}]", env.join(", ")));
            }
            out.push_str(&pack(&facts, "        "));
        }
    }
    out
}

/// A complete, loadable example config file, printed by
/// `-config-file-example` so users start from something known to parse.
///
/// Flags with defaults are active lines set to their default; optional,
/// boolean and deprecated flags are commented out. The token line is active
/// with a placeholder, so a forgotten edit fails loudly at the API rather
/// than silently.
pub fn example_config_file() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(build_example)
}

fn build_example() -> String {
    let mut out = wrap(
        "Example config file for fastly-exporter; use it with -config-file PATH. \
         One flag per line: the flag name (a leading - or -- is optional), whitespace, \
         then the value (the rest of the line). Lines starting with # are comments. \
         A boolean flag alone on a line means true. Repeatable flags may appear on \
         several lines. Command-line flags and FASTLY_EXPORTER_* environment variables \
         override this file. -config-file, -config-file-example, -version and -help \
         are command-line only.",
        "# ",
    );
    for group in Group::ALL {
        let flags: Vec<&Flag> = in_group(group).filter(|f| f.in_file()).collect();
        if flags.is_empty() {
            continue;
        }
        out.push_str(&format!("\n# ==== {} ====\n", group.title()));
        for flag in flags {
            out.push('\n');
            let mut help = flag.help.to_string();
            if !flag.min.is_empty() {
                help.push_str(&format!(" Allowed range {}..{}.", flag.min, flag.max));
            }
            if flag.kind == Kind::List {
                help.push_str(" May be repeated on several lines.");
            }
            out.push_str(&wrap(&help, "# "));
            let line = if flag.kind == Kind::Bool {
                format!("# {}\n", flag.name)
            } else if flag.required {
                format!("{} {}\n", flag.name, flag.example)
            } else if flag.deprecated || flag.default.is_empty() {
                let value = if flag.example.is_empty() { flag.default } else { flag.example };
                format!("# {} {}\n", flag.name, value)
            } else {
                format!("{} {}\n", flag.name, flag.default)
            };
            out.push_str(&line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_lists_every_flag_with_env_and_default() {
        let text = usage();
        for flag in FLAGS {
            assert!(text.contains(&format!("-{}", flag.name)), "{}", flag.name);
            if let Some(env) = env_name(flag) {
                assert!(text.contains(&env), "{env}");
            }
            if !flag.default.is_empty() {
                assert!(text.contains(&format!("[default: {}]", flag.default)));
            }
        }
        for heading in ["AUTH", "FILTERS", "REFRESH", "HTTP", "OTHER"] {
            assert!(text.contains(&format!("\n{heading}\n")), "{heading}");
        }
        assert!(text.contains("FASTLY_API_TOKEN"));
        assert!(text.contains("-h, -help"));
        // Headings appear in order and each flag sits under its own heading.
        let pos = |s: &str| text.find(s).unwrap_or(usize::MAX);
        assert!(pos("\nAUTH\n") < pos("  -token"));
        assert!(pos("\nFILTERS\n") < pos("  -service-shard"));
        assert!(pos("  -aggregate-only") < pos("\nREFRESH\n"));
        assert!(pos("\nREFRESH\n") < pos("  -rt-max-body"));
        assert!(pos("  -rt-max-body") < pos("\nHTTP\n"));
        assert!(pos("\nHTTP\n") < pos("  -rt-endpoint"));
        assert!(pos("\nOTHER\n") < pos("  -config-file"));
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
    }

    #[test]
    fn example_mentions_every_file_flag() {
        let text = example_config_file();
        for flag in FLAGS {
            if flag.in_file() {
                let active = text.lines().any(|l| l.split_whitespace().next() == Some(flag.name));
                let commented = text.contains(&format!("\n# {}", flag.name));
                assert!(active || commented, "{}", flag.name);
            }
        }
        assert!(text.contains("\ntoken YOUR-FASTLY-API-TOKEN\n"));
        assert!(text.contains("\n# service-shard 1/3\n"));
        assert!(text.contains("\nlisten 127.0.0.1:8080\n"));
    }
}
