//! A reader over `serde_json::Value` that knows where it is in the file.
//!
//! Every typed read either returns the value or records a [`ConfigError`] naming the JSON path
//! and returns `None`, so one pass over the file collects every problem and the caller simply
//! carries on with the default.

use serde_json::{Map, Value};

use super::ConfigError;
use super::model::Secret;
use crate::duration::{GoDuration, parse_duration};

/// The problems found so far, in file order.
#[derive(Default)]
pub(super) struct Problems(Vec<ConfigError>);

impl Problems {
    /// Records one problem.
    pub fn add(&mut self, error: ConfigError) {
        self.0.push(error);
    }

    /// The problems found, in the order they were found.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }
}

/// The keys an object accepts, and a tailored message for keys that belong somewhere else.
pub(super) struct Keys {
    /// Every accepted key, in the order the docs list them.
    pub known: &'static [&'static str],
    /// `(key, message)` for keys that are valid elsewhere but not here.
    pub misplaced: &'static [(&'static str, &'static str)],
    /// Whether keys outside `known` are accepted (objects shared with the gateway).
    pub open: bool,
}

impl Keys {
    /// An object whose other keys belong to someone else.
    pub const ANY: Keys = Keys {
        known: &[],
        misplaced: &[],
        open: true,
    };
}

/// The shortest form of the accepted range of an integer key.
#[derive(Clone, Copy)]
pub(super) struct IntRange {
    pub min: i64,
    pub max: i64,
    /// Message when the value is below `min`, continuing "<value> ...".
    pub below: &'static str,
}

impl IntRange {
    /// Counts of things (connections, the db index): zero or more.
    pub const COUNT: IntRange = IntRange {
        min: 0,
        max: i32::MAX as i64,
        below: "is negative; this key takes 0 or more",
    };
}

/// A JSON value and its path in the file.
#[derive(Clone)]
pub(super) struct Node<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Node<'a> {
    /// The whole document.
    pub fn root(value: &'a Value) -> Self {
        Self {
            value,
            path: String::new(),
        }
    }

    /// The raw value.
    pub fn value(&self) -> &'a Value {
        self.value
    }

    /// The JSON path, such as `extra_config.redis.clusters[0].addresses[2]`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of `key` inside this object.
    pub fn key_path(&self, key: &str) -> String {
        let simple = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
        match (simple, self.path.is_empty()) {
            (true, true) => key.to_owned(),
            (true, false) => format!("{}.{key}", self.path),
            (false, _) => format!("{}[{}]", self.path, Value::from(key)),
        }
    }

    fn at(&self, path: String, value: &'a Value) -> Node<'a> {
        Node { value, path }
    }

    /// An error about this value; the message continues a sentence that starts with the value.
    pub fn invalid(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            message: message.into(),
            value: Some(render(self.value)),
        }
    }

    /// An error about this key that does not show its value.
    pub fn problem(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            message: message.into(),
            value: None,
        }
    }

    fn wrong_type(&self, p: &mut Problems, expected: &str) {
        let message = match self.value {
            Value::Null => {
                format!(
                    "is not allowed here: this key takes {expected}; to use the default, leave the key out"
                )
            }
            _ => format!("is {}, but this key takes {expected}", kind(self.value)),
        };
        p.add(self.invalid(message));
    }

    /// Reads an object, reporting every key that `keys` does not accept.
    pub fn object(&self, p: &mut Problems, keys: &Keys) -> Option<Object<'a>> {
        let Some(map) = self.value.as_object() else {
            self.wrong_type(p, "an object");
            return None;
        };
        if !keys.open {
            for key in map.keys().filter(|k| !keys.known.contains(&k.as_str())) {
                let at = self.at(self.key_path(key), &Value::Null);
                p.add(at.problem(unknown_key_message(key, keys)));
            }
        }
        Some(Object {
            node: self.clone(),
            map,
        })
    }

    /// Reads an array, returning its items with their paths.
    pub fn array(&self, p: &mut Problems) -> Option<Vec<Node<'a>>> {
        let Some(items) = self.value.as_array() else {
            self.wrong_type(p, "an array");
            return None;
        };
        let items = items.iter().enumerate();
        Some(
            items
                .map(|(i, v)| self.at(format!("{}[{i}]", self.path), v))
                .collect(),
        )
    }

    /// Reads a string.
    pub fn string(&self, p: &mut Problems) -> Option<&'a str> {
        let s = self.value.as_str();
        if s.is_none() {
            self.wrong_type(p, "a string");
        }
        s
    }

    /// Reads a credential. Whatever is wrong with it, its value never reaches the error.
    pub fn secret(&self, p: &mut Problems) -> Option<Secret> {
        if let Some(s) = self.value.as_str() {
            return Some(Secret::new(s));
        }
        p.add(self.problem(format!(
            "must be a string, but is {}; the value is not shown because it is a credential",
            kind(self.value)
        )));
        None
    }

    /// Reads `true` or `false`.
    pub fn boolean(&self, p: &mut Problems) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" || s == "false" => {
                p.add(self.invalid(format!(
                    "is a string; write the boolean without quotes: {s}"
                )));
                None
            }
            _ => {
                self.wrong_type(p, "true or false");
                None
            }
        }
    }

    /// Reads an integer written as a JSON integer (no fraction, no exponent) within `range`.
    pub fn integer(&self, p: &mut Problems, range: IntRange) -> Option<i64> {
        let n = match self.value {
            Value::Number(n) => n,
            Value::String(s) if s.trim().parse::<i64>().is_ok() => {
                p.add(self.invalid(format!(
                    "is a string; write the number without quotes: {}",
                    s.trim()
                )));
                return None;
            }
            _ => {
                self.wrong_type(p, "an integer");
                return None;
            }
        };
        let too_large = format!("is too large; the most this key accepts is {}", range.max);
        let Some(i) = n.as_i64() else {
            let message = match n.as_f64() {
                _ if n.is_u64() => too_large,
                Some(f) if f.fract() != 0.0 => {
                    "is not a whole number; this key takes an integer".to_owned()
                }
                Some(f) if f.abs() > range.max as f64 => too_large,
                _ => "is written with a decimal point or an exponent; write it as a plain \
                      integer such as 10"
                    .to_owned(),
            };
            p.add(self.invalid(message));
            return None;
        };
        if i < range.min {
            p.add(self.invalid(range.below));
            None
        } else if i > range.max {
            p.add(self.invalid(too_large));
            None
        } else {
            Some(i)
        }
    }

    /// Reads a Go duration string such as `"5s"` or `"1h30m"`.
    pub fn duration(&self, p: &mut Problems) -> Option<GoDuration> {
        let s = match self.value {
            Value::String(s) => s,
            Value::Number(_) => {
                p.add(self.invalid(
                    "is a number, but durations are strings with a unit, such as \"5s\" or \
                     \"300ms\"",
                ));
                return None;
            }
            _ => {
                self.wrong_type(p, "a duration string such as \"5s\"");
                return None;
            }
        };
        match parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                p.add(self.invalid(format!("is not a duration: {e}")));
                None
            }
        }
    }
}

/// An object being read, with its path.
pub(super) struct Object<'a> {
    node: Node<'a>,
    map: &'a Map<String, Value>,
}

impl<'a> Object<'a> {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<Node<'a>> {
        let value = self.map.get(key)?;
        Some(self.node.at(self.node.key_path(key), value))
    }

    /// The value of a key that must be present; `how` tells the user what to write.
    pub fn required(&self, key: &str, p: &mut Problems, how: &str) -> Option<Node<'a>> {
        let node = self.get(key);
        if node.is_none() {
            let path = self.node.key_path(key);
            p.add(ConfigError {
                path,
                message: format!("required key is missing; {how}"),
                value: None,
            });
        }
        node
    }

    /// Every key, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> {
        self.map.keys().map(String::as_str)
    }
}

fn unknown_key_message(key: &str, keys: &Keys) -> String {
    if let Some((_, message)) = keys.misplaced.iter().find(|(k, _)| *k == key) {
        return (*message).to_owned();
    }
    match did_you_mean(key, keys.known) {
        Some(known) => format!("unknown key; did you mean `{known}`?"),
        None => format!(
            "unknown key; the keys allowed here are {}",
            keys.known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The known key closest to a misspelt one, if any is close enough to be a likely typo, or the
/// one known key that has it as a word (`key` for `private_key`).
pub(super) fn did_you_mean<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = key.to_ascii_lowercase();
    let typo = known
        .iter()
        .map(|k| (strsim::normalized_damerau_levenshtein(&lower, k), *k))
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k);
    typo.or_else(|| {
        let mut holders = known
            .iter()
            .filter(|k| k.split('_').any(|word| word == lower));
        match (holders.next(), holders.next()) {
            (Some(only), None) => Some(*only),
            _ => None,
        }
    })
}

/// "a string", "an object", ... for messages.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value as JSON for an error message. Objects are never shown: they may hold a password.
fn render(value: &Value) -> String {
    const MAX: usize = 60;
    let text = match value {
        Value::Object(map) if map.is_empty() => "{}".to_owned(),
        Value::Object(_) => "{...}".to_owned(),
        Value::Array(items) if items.iter().any(|v| v.is_object() || v.is_array()) => {
            "[...]".to_owned()
        }
        _ => value.to_string(),
    };
    if text.chars().count() <= MAX {
        return text;
    }
    let mut short: String = text.chars().take(MAX - 3).collect();
    short.push_str("...");
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_quote_keys_that_are_not_identifiers() {
        let value = json!({});
        let root = Node::root(&value);
        assert_eq!(root.key_path("extra_config"), "extra_config");
        let extra = root.at(root.key_path("extra_config"), &value);
        assert_eq!(
            extra.key_path("plugin/redplug"),
            "extra_config[\"plugin/redplug\"]"
        );
        assert_eq!(root.key_path("$schema"), "$schema");
    }

    #[test]
    fn did_you_mean_finds_typos_but_not_strangers() {
        let known = ["name", "dial_timeout", "pool_timeout", "password"];
        assert_eq!(did_you_mean("dial_timout", &known), Some("dial_timeout"));
        assert_eq!(did_you_mean("pasword", &known), Some("password"));
        assert_eq!(did_you_mean("Name", &known), Some("name"));
        assert_eq!(did_you_mean("pool_timeuot", &known), Some("pool_timeout"));
        assert_eq!(did_you_mean("sentinel", &known), None);
        assert_eq!(did_you_mean("dial", &known), Some("dial_timeout"));
        // Two keys end in `timeout`: no guess.
        assert_eq!(did_you_mean("timeout", &known), None);
    }

    #[test]
    fn render_shortens_and_hides_objects() {
        assert_eq!(render(&json!("x".repeat(100))).chars().count(), 60);
        assert_eq!(render(&json!({"password": "hunter2"})), "{...}");
        assert_eq!(render(&json!([{"password": "hunter2"}])), "[...]");
        assert_eq!(render(&json!(["a:1", 2])), "[\"a:1\",2]");
    }

    #[test]
    fn integers_must_be_plain_and_in_range() {
        let cases = [
            (json!(1.5), "is not a whole number"),
            (
                json!(1e99),
                "is too large; the most this key accepts is 2147483647",
            ),
            (json!(1e2), "write it as a plain integer"),
            (json!(u64::MAX), "is too large"),
            (json!(3_000_000_000_i64), "is too large"),
            (json!(-1), "is negative"),
            (json!("10"), "write the number without quotes: 10"),
            (json!(true), "is a boolean, but this key takes an integer"),
            (json!(null), "is not allowed here"),
        ];
        for (value, fragment) in cases {
            let mut p = Problems::default();
            let got = Node::root(&value).integer(&mut p, IntRange::COUNT);
            assert_eq!(got, None, "{value}");
            let errors = p.into_vec();
            assert!(errors[0].message.contains(fragment), "{value}: {errors:?}");
        }
        let mut p = Problems::default();
        assert_eq!(
            Node::root(&json!(7)).integer(&mut p, IntRange::COUNT),
            Some(7)
        );
    }
}
