//! A reader over the [`json`](super::json) tree of our sections that knows where it is in the
//! file.
//!
//! Every typed read either returns the value or records a [`ConfigError`] naming the JSON path
//! and returns `None`, so one pass over the file collects every problem and the caller simply
//! carries on with the default.

use super::ConfigError;
use super::json::{Entry, Json, Value};
use super::model::{ConfigWarning, Secret};
use super::text::shown;
use redplug::duration::{GoDuration, parse_duration};

/// The problems found so far, in file order, and the warnings: settings that load but are
/// not honoured exactly.
#[derive(Default)]
pub(super) struct Problems {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigWarning>,
}

impl Problems {
    /// Records one problem. Whatever in it came from the file is escaped once more here, so
    /// that no message can carry a control or invisible character to a terminal or a log.
    pub(super) fn add(&mut self, mut error: ConfigError) {
        for text in [&mut error.path, &mut error.message] {
            escape(text);
        }
        if let Some(value) = &mut error.value {
            escape(value);
        }
        self.errors.push(error);
    }

    /// Records one warning, escaped like a problem.
    pub(super) fn warn(&mut self, mut warning: ConfigWarning) {
        for text in [&mut warning.path, &mut warning.message] {
            escape(text);
        }
        self.warnings.push(warning);
    }

    /// The problems and the warnings, each in the order they were found.
    pub(super) fn into_parts(self) -> (Vec<ConfigError>, Vec<ConfigWarning>) {
        (self.errors, self.warnings)
    }
}

/// Replaces `text` with its [`shown`] form when that differs.
fn escape(text: &mut String) {
    if let std::borrow::Cow::Owned(escaped) = shown(text) {
        *text = escaped;
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
    /// Whether KrakenD's comment keys (starting with `@`, `$`, `_` or `#`) are allowed, as
    /// KrakenD's schema allows them in this object.
    pub comments: bool,
}

impl Keys {
    /// An object whose other keys belong to someone else.
    pub(super) const ANY: Keys = Keys {
        known: &[],
        misplaced: &[],
        open: true,
        comments: true,
    };
}

/// Whether `key` is one of KrakenD's comment keys, which its schema lets a user put in some
/// objects for notes (`"@comment": "..."`, `"$ref"`, `"_note"`, `"#todo"`).
pub(super) fn is_comment_key(key: &str) -> bool {
    key.starts_with(['@', '$', '_', '#'])
}

/// The shortest form of the accepted range of an integer key.
#[derive(Clone, Copy)]
pub(super) struct IntRange {
    pub min: i64,
    pub max: i64,
    /// Message when the value is below `min`, continuing "<value> ...".
    pub below: &'static str,
    /// Said after "the most this key accepts is <max>", to explain the bound.
    pub above: &'static str,
}

impl IntRange {
    /// Counts of things (the db index, retries): zero or more.
    pub(super) const COUNT: IntRange = IntRange {
        min: 0,
        max: i32::MAX as i64,
        below: "is negative; this key takes 0 or more",
        above: "",
    };

    /// Counts of connections: zero or more, and no more than one pool may hold.
    pub(super) const CONNECTIONS: IntRange = IntRange {
        min: 0,
        max: MAX_POOL_CONNECTIONS as i64,
        below: "is negative; this key takes 0 or more",
        above: " connections, Redis' own default `maxclients`; a gateway needs far fewer \
                connections than concurrent requests, since plain commands share one",
    };
}

/// The most connections one pool or cluster may be configured to hold.
pub(super) const MAX_POOL_CONNECTIONS: usize = 10_000;

/// `.key`, or `["key"]` for a key that is not a plain identifier (escaped, so that nothing in
/// it can act on a terminal).
pub(super) fn key_segment(key: &str) -> String {
    let simple = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
    if simple {
        format!(".{key}")
    } else {
        format!("[{}]", quoted(key))
    }
}

/// `text` as a JSON string, with invisible and direction-changing characters escaped too.
pub(super) fn quoted(text: &str) -> String {
    let json = serde_json::Value::from(text).to_string();
    shown(&json).into_owned()
}

/// A JSON value and its path in the file.
#[derive(Clone)]
pub(super) struct Node<'a> {
    value: &'a Json<'a>,
    path: String,
}

impl<'a> Node<'a> {
    /// A section of the file: `value` at `path`.
    pub(super) fn new(value: &'a Json<'a>, path: impl Into<String>) -> Self {
        Self {
            value,
            path: path.into(),
        }
    }

    /// The value in the tree.
    pub(super) fn json(&self) -> &'a Json<'a> {
        self.value
    }

    /// Whether the value is a string.
    pub(super) fn is_string(&self) -> bool {
        matches!(self.value.value, Value::String(_))
    }

    /// The kind of value ("a string", "an object", ...) for messages.
    pub(super) fn kind(&self) -> &'static str {
        kind(&self.value.value)
    }

    /// The JSON path, such as `extra_config.redis.clusters[0].addresses[2]`.
    pub(super) fn path(&self) -> &str {
        &self.path
    }

    /// The path of `key` inside this object.
    pub(super) fn key_path(&self, key: &str) -> String {
        let segment = key_segment(key);
        match segment.strip_prefix('.') {
            Some(plain) if self.path.is_empty() => plain.to_owned(),
            _ => format!("{}{segment}", self.path),
        }
    }

    fn at(&self, path: String, value: &'a Json<'a>) -> Node<'a> {
        Node { value, path }
    }

    /// An error about this value; the message continues a sentence that starts with the value.
    pub(super) fn invalid(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            message: message.into(),
            value: Some(render(&self.value.value)),
        }
    }

    /// An error about this value showing `shown` in its place (a value with parts that must
    /// not be echoed, such as an address with a password in it).
    pub(super) fn invalid_as(&self, shown: String, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            message: message.into(),
            value: Some(shown),
        }
    }

    /// A warning about this key; the message is a whole sentence, value included where it
    /// helps.
    pub(super) fn warning(&self, message: impl Into<String>) -> ConfigWarning {
        ConfigWarning {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    /// An error about this key that does not show its value.
    pub(super) fn problem(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            message: message.into(),
            value: None,
        }
    }

    fn wrong_type(&self, p: &mut Problems, expected: &str) {
        let message = match self.value.value {
            Value::Null => {
                format!(
                    "is not allowed here: this key takes {expected}; to use the default, leave the key out"
                )
            }
            _ => format!("is {}, but this key takes {expected}", self.kind()),
        };
        p.add(self.invalid(message));
    }

    /// Reads an object, reporting every key that `keys` does not accept.
    pub(super) fn object(&self, p: &mut Problems, keys: &Keys) -> Option<Object<'a>> {
        let Value::Object(entries) = &self.value.value else {
            self.wrong_type(p, "an object");
            return None;
        };
        if !keys.open {
            let unknown = entries
                .iter()
                .map(|entry| &*entry.key)
                .filter(|key| !(keys.known.contains(key) || keys.comments && is_comment_key(key)));
            for key in unknown {
                p.add(ConfigError {
                    path: self.key_path(key),
                    message: unknown_key_message(key, keys),
                    value: None,
                });
            }
        }
        Some(Object {
            node: self.clone(),
            entries,
        })
    }

    /// Reads an array, returning its items with their paths.
    pub(super) fn array(&self, p: &mut Problems) -> Option<Vec<Node<'a>>> {
        let Value::Array(items) = &self.value.value else {
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
    pub(super) fn string(&self, p: &mut Problems) -> Option<&'a str> {
        match &self.value.value {
            Value::String(s) => Some(s),
            _ => {
                self.wrong_type(p, "a string");
                None
            }
        }
    }

    /// Reads a credential. Whatever is wrong with it, its value never reaches the error.
    pub(super) fn secret(&self, p: &mut Problems) -> Option<Secret> {
        if let Value::String(s) = &self.value.value {
            return Some(Secret::new(s.as_ref()));
        }
        p.add(self.problem(format!(
            "must be a string, but is {}; the value is not shown because it is a credential",
            self.kind()
        )));
        None
    }

    /// Reads `true` or `false`.
    pub(super) fn boolean(&self, p: &mut Problems) -> Option<bool> {
        match &self.value.value {
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
    /// `-0` is zero.
    pub(super) fn integer(&self, p: &mut Problems, range: IntRange) -> Option<i64> {
        let text = match &self.value.value {
            Value::Number(text) => *text,
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
        let too_large = format!(
            "is too large; the most this key accepts is {}{}",
            range.max, range.above
        );
        let Ok(i) = text.parse::<i64>() else {
            let digits = text.strip_prefix('-').unwrap_or(text);
            let message = match text.parse::<f64>() {
                _ if digits.bytes().all(|b| b.is_ascii_digit()) && text.starts_with('-') => {
                    range.below.to_owned()
                }
                _ if digits.bytes().all(|b| b.is_ascii_digit()) => too_large,
                Ok(f) if !f.is_finite() || f.abs() > range.max as f64 => too_large,
                Ok(f) if f.fract() != 0.0 => {
                    "is not a whole number; this key takes an integer".to_owned()
                }
                Ok(f) => format!(
                    "is written with a decimal point or an exponent; write it as the plain \
                     integer {f:.0}"
                ),
                Err(_) => "is not a number this key can take".to_owned(),
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
    pub(super) fn duration(&self, p: &mut Problems) -> Option<GoDuration> {
        let s = match &self.value.value {
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
                p.add(self.invalid(format!("is not a duration: {}", shown(&e.to_string()))));
                None
            }
        }
    }
}

/// An object being read, with its path.
pub(super) struct Object<'a> {
    node: Node<'a>,
    entries: &'a [Entry<'a>],
}

impl<'a> Object<'a> {
    /// The value of `key`, if present (the last one if the key is repeated; a repeat is
    /// reported on its own).
    pub(super) fn get(&self, key: &str) -> Option<Node<'a>> {
        let entry = self.entries.iter().rev().find(|entry| entry.key == key)?;
        Some(self.node.at(self.node.key_path(key), &entry.value))
    }

    /// The value of a key that must be present; `how` tells the user what to write.
    pub(super) fn required(&self, key: &str, p: &mut Problems, how: &str) -> Option<Node<'a>> {
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

    /// Every entry with its path, in file order.
    pub(super) fn entries(&self) -> impl Iterator<Item = (&'a str, Node<'a>)> + '_ {
        self.entries.iter().map(|entry| {
            let path = self.node.key_path(&entry.key);
            (&*entry.key, self.node.at(path, &entry.value))
        })
    }
}

fn unknown_key_message(key: &str, keys: &Keys) -> String {
    if let Some((_, message)) = keys.misplaced.iter().find(|(k, _)| *k == key) {
        return (*message).to_owned();
    }
    let comment = if is_comment_key(key) && !keys.comments {
        " (keys that start with `@`, `$`, `_` or `#` are KrakenD comments, which this object \
         does not take)"
    } else {
        ""
    };
    match crate::names::closest(key, keys.known) {
        Some(known) => format!("unknown key; did you mean `{known}`?{comment}"),
        None => format!(
            "unknown key; the keys allowed here are {}{comment}",
            keys.known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// "a string", "an object", ... for messages.
pub(super) fn kind(value: &Value<'_>) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value as it is written in the file, for an error message: numbers as written, strings
/// escaped, long ones shortened. Objects are never shown: they may hold a password.
fn render(value: &Value<'_>) -> String {
    const MAX: usize = 60;
    let text = match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(text) => (*text).to_owned(),
        Value::String(s) => quoted(s),
        Value::Object(entries) if entries.is_empty() => "{}".to_owned(),
        Value::Object(_) => "{...}".to_owned(),
        Value::Array(items)
            if items
                .iter()
                .any(|item| matches!(item.value, Value::Object(_) | Value::Array(_))) =>
        {
            "[...]".to_owned()
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|item| render(&item.value)).collect();
            format!("[{}]", items.join(","))
        }
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
    use super::super::json::{Budget, parse};
    use super::*;

    fn tree(text: &str) -> Json<'_> {
        parse(text, 0, &mut Budget::default()).unwrap()
    }

    #[test]
    fn paths_quote_keys_that_are_not_identifiers() {
        let value = tree("{}");
        let root = Node::new(&value, "");
        assert_eq!(root.key_path("extra_config"), "extra_config");
        let extra = root.at(root.key_path("extra_config"), &value);
        assert_eq!(
            extra.key_path("plugin/redplug"),
            "extra_config[\"plugin/redplug\"]"
        );
        assert_eq!(root.key_path("$schema"), "$schema");
        assert_eq!(
            extra.key_path("evil\u{1b}[2J\u{202e}"),
            "extra_config[\"evil\\u001b[2J\\u{202e}\"]"
        );
    }

    #[test]
    fn render_shows_values_as_written_and_hides_objects() {
        let shown = |text: &str| render(&tree(text).value);
        assert_eq!(shown(&format!("{:?}", "x".repeat(100))).chars().count(), 60);
        assert_eq!(shown(r#"{"password": "hunter2"}"#), "{...}");
        assert_eq!(shown(r#"[{"password": "hunter2"}]"#), "[...]");
        assert_eq!(shown(r#"["a:1", 2]"#), "[\"a:1\",2]");
        assert_eq!(shown("1e1"), "1e1");
        assert_eq!(shown("-0"), "-0");
        assert_eq!(shown(r#""\u001b[2J""#), "\"\\u001b[2J\"");
    }

    #[test]
    fn integers_must_be_plain_and_in_range() {
        let cases = [
            ("1.5", "is not a whole number"),
            (
                "1e99",
                "is too large; the most this key accepts is 2147483647",
            ),
            ("1e400", "is too large"),
            ("1e1", "write it as the plain integer 10"),
            ("18446744073709551615", "is too large"),
            ("-18446744073709551615", "is negative"),
            ("3000000000", "is too large"),
            ("-1", "is negative"),
            (r#""10""#, "write the number without quotes: 10"),
            ("true", "is a boolean, but this key takes an integer"),
            ("null", "is not allowed here"),
        ];
        for (text, fragment) in cases {
            let value = tree(text);
            let mut p = Problems::default();
            let got = Node::new(&value, "n").integer(&mut p, IntRange::COUNT);
            assert_eq!(got, None, "{text}");
            let (errors, _) = p.into_parts();
            assert!(errors[0].message.contains(fragment), "{text}: {errors:?}");
            assert_eq!(errors[0].value.as_deref(), Some(text), "shown as written");
        }
        for (text, expected) in [("7", 7), ("-0", 0)] {
            let value = tree(text);
            let mut p = Problems::default();
            let got = Node::new(&value, "n").integer(&mut p, IntRange::COUNT);
            assert_eq!(got, Some(expected), "{text}");
        }
    }
}
