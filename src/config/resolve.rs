//! Which values a flag ends up with: the layers (command line, environment, config file) in
//! precedence order, and [`Value`], what a flag's `apply` reads its value through.

use std::time::Duration;

use crate::util::duration;

use super::ConfigError;
use super::args::{Layer, parse_bool};
use super::flags::{FLAGS, Flag, Kind};

/// The layers, highest precedence first.
pub(crate) struct Sources {
    pub layers: Vec<Layer>,
}

impl Sources {
    /// The value of `flag` (a flag with its own `apply`, not an alias): from the highest layer
    /// that set it or one of its deprecated aliases; within a layer the canonical flag wins.
    pub(crate) fn resolve(&self, flag: &'static Flag) -> Value<'_> {
        let aliases = FLAGS.iter().copied().filter(|f| f.alias_of.is_some_and(|t| t.is(flag)));
        let spellings: Vec<&'static Flag> = std::iter::once(flag).chain(aliases).collect();
        for layer in &self.layers {
            for &used in &spellings {
                let values = layer.values(used);
                if !values.is_empty() {
                    return Value { flag, used, values, sources: self };
                }
            }
        }
        Value { flag, used: flag, values: Vec::new(), sources: self }
    }

    /// Whether any layer sets `flag` under that exact name.
    pub(crate) fn mentions(&self, flag: &Flag) -> bool {
        self.layers.iter().any(|l| !l.values(flag).is_empty())
    }
}

/// A flag's resolved value. Every accessor names the flag the user actually typed (a
/// deprecated alias, perhaps) in its errors, and never shows anything but the value itself.
pub(crate) struct Value<'a> {
    /// The flag being applied: its default and clamp bounds.
    flag: &'static Flag,
    /// The flag whose values these are (`flag` or one of its aliases).
    used: &'static Flag,
    /// Every value from the winning layer, in order; empty when no layer set it.
    values: Vec<&'a str>,
    sources: &'a Sources,
}

impl<'a> Value<'a> {
    /// Whether any layer set the flag (or an alias of it).
    pub(crate) fn is_set(&self) -> bool {
        !self.values.is_empty()
    }

    /// The flag whose values these are, for flags whose aliases read differently.
    pub(crate) fn used(&self) -> &'static Flag {
        self.used
    }

    /// Another flag's value, for rules spanning two flags.
    pub(crate) fn other(&self, flag: &'static Flag) -> Value<'a> {
        self.sources.resolve(flag)
    }

    /// The last value, untrimmed, or the default.
    fn raw(&self) -> &str {
        self.values.last().copied().unwrap_or(self.flag.default)
    }

    /// The last value (or the default), trimmed.
    pub(crate) fn text(&self) -> String {
        self.raw().trim().to_string()
    }

    /// Every value of a repeatable flag, untrimmed.
    pub(crate) fn list(&self) -> Vec<String> {
        self.values.iter().map(|s| s.to_string()).collect()
    }

    /// `invalid value "v" for -flag: reason`, the Go `flag` package's wording.
    pub(crate) fn invalid(&self, value: &str, reason: &str) -> ConfigError {
        let shown = value.replace('\n', "\\n").replace('\r', "\\r");
        ConfigError::new(format!("invalid value \"{shown}\" for -{}: {reason}", self.used.name))
    }

    /// The last value (or the default), trimmed, through a value parser.
    pub(crate) fn parse<T>(&self, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        let raw = self.raw();
        parse(raw.trim()).map_err(|r| self.invalid(raw, &r))
    }

    /// Every value of a repeatable flag, each (untrimmed) through a value parser.
    pub(crate) fn each<T>(&self, parse: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, ConfigError> {
        self.values.iter().map(|raw| parse(raw).map_err(|r| self.invalid(raw, &r))).collect()
    }

    /// A boolean in Go's `strconv.ParseBool` syntax.
    pub(crate) fn bool(&self) -> Result<bool, ConfigError> {
        let raw = self.raw();
        parse_bool(raw.trim()).ok_or_else(|| {
            ConfigError::new(format!("invalid boolean value \"{}\" for -{}", raw.replace('\n', "\\n"), self.used.name))
        })
    }

    /// A Go duration clamped to the flag's bounds, with a warning when clamped.
    pub(crate) fn duration(&self, warnings: &mut Vec<String>) -> Result<Duration, ConfigError> {
        let d = self.parse(duration::parse)?;
        Ok(self.clamp(d, warnings))
    }

    /// Like [`Value::duration`], but 0 means "off" (`None`) and is not clamped.
    pub(crate) fn duration_or_off(&self, warnings: &mut Vec<String>) -> Result<Option<Duration>, ConfigError> {
        let d = self.parse(duration::parse)?;
        Ok((!d.is_zero()).then(|| self.clamp(d, warnings)))
    }

    /// Clamps `d` to the flag's range, warning in the form
    /// `-api-timeout 1s is below the minimum 5s; using 5s` (naming the flag typed).
    fn clamp(&self, d: Duration, warnings: &mut Vec<String>) -> Duration {
        debug_assert_eq!(self.flag.kind, Kind::Duration);
        let bound = |s: &str| (!s.is_empty()).then(|| duration::parse(s).ok()).flatten();
        let (limit, word) = match (bound(self.flag.min), bound(self.flag.max)) {
            (Some(min), _) if d < min => (min, "below the minimum"),
            (_, Some(max)) if d > max => (max, "above the maximum"),
            _ => return d,
        };
        warnings.push(format!(
            "-{} {} is {word} {m}; using {m}",
            self.used.name,
            duration::format(d),
            m = duration::format(limit)
        ));
        limit
    }
}
