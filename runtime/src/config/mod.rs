//! Reading and validating the gateway config: `extra_config.redis` and
//! `extra_config["plugin/redplug"]`.
//!
//! The input is a whole KrakenD-style file; everything outside those two keys belongs to the
//! gateway and is ignored. Inside them every key is checked, every default is applied, TLS
//! files are read, and every problem in the file is reported at once, each with its JSON path:
//!
//! ```
//! let json = r#"{"extra_config": {"redis": {"connection_pools": [
//!     {"name": "cache", "address": "localhost:6379", "dial_timout": "1s", "db": -1}
//! ]}}}"#;
//! let errors = redplug_runtime::config::parse(json).unwrap_err();
//! assert_eq!(errors.errors().len(), 2);
//! assert!(errors.to_string().contains("did you mean `dial_timeout`?"));
//! ```

mod address;
mod endpoints;
mod gateway;
mod json;
mod model;
mod options;
mod reader;
mod redis;
mod source;
pub(crate) mod text;
mod tls;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

pub use endpoints::{MAX_BACKENDS, MAX_ENDPOINTS};
pub use gateway::MAX_BODY_BYTES;
pub use model::*;
pub use source::MAX_FILE_BYTES;

use json::{Budget, Json, Refused, Value};
use reader::{Keys, Node, Problems};
use source::{Raw, Sections, line_and_column};

/// The key under `extra_config` that holds each plugin's own config.
pub const PLUGIN_NAMESPACE: &str = "plugin/redplug";

/// KrakenD's telemetry namespace, whose `exporters.prometheus[]` `redplug serve` honours.
pub const OPENTELEMETRY_NAMESPACE: &str = "telemetry/opentelemetry";

/// The key of our namespace that bounds the bodies plugins read, at the service level and per
/// endpoint; no plugin can have this name.
pub const MAX_BODY_BYTES_KEY: &str = "max_body_bytes";

/// `["plugin/redplug"]`, as a JSON path writes the namespace after `extra_config`.
pub(crate) fn namespace_segment() -> String {
    reader::key_segment(PLUGIN_NAMESPACE)
}

/// Parses and validates a whole gateway config. Relative TLS file paths are read from the
/// current directory.
pub fn parse(json: &str) -> Result<Config, ConfigErrors> {
    parse_with_base(json, Path::new(""))
}

/// Parses and validates a whole gateway config, reading relative TLS file paths from
/// `base_dir`.
pub fn parse_with_base(json: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let sections = source::split(json).map_err(ConfigErrors::one)?;
    let mut problems = Problems::default();
    let mut config = read_config(&sections, &mut problems, base_dir);
    let (found, warnings) = problems.into_parts();
    let mut errors = sections.problems;
    errors.extend(found);
    match ConfigErrors::new(errors, None) {
        Some(errors) => Err(errors),
        None => {
            config.warnings = warnings;
            Ok(config)
        }
    }
}

/// Reads, parses and validates the config file at `path` (at most [`MAX_FILE_BYTES`]).
/// Relative TLS file paths are read from the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let json = source::read_file(path).map_err(|e| ConfigErrors::one(e).in_file(path))?;
    let base = path.parent().unwrap_or(Path::new(""));
    parse_with_base(&json, base).map_err(|e| e.in_file(path))
}

/// One problem in the config: where it is, the value found there, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the offending key, such as `extra_config.redis.connection_pools[1].db`;
    /// empty for problems with the file as a whole.
    pub path: String,
    /// What is wrong and how to fix it. When `value` is set, the message continues a sentence
    /// that starts with the value (`is not a duration: ...`).
    pub message: String,
    /// The offending value as JSON, shortened if long. Never set for credentials.
    pub value: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        if let Some(value) = &self.value {
            write!(f, "{value} ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config file (at least one), reported together so they can all be
/// fixed in one go.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}", render(self.file.as_deref(), &self.errors))]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
    file: Option<PathBuf>,
}

impl ConfigErrors {
    /// Wraps `errors`, or returns `None` when there are none.
    pub fn new(errors: Vec<ConfigError>, file: Option<PathBuf>) -> Option<Self> {
        (!errors.is_empty()).then_some(Self { errors, file })
    }

    fn one(error: ConfigError) -> Self {
        Self {
            errors: vec![error],
            file: None,
        }
    }

    fn in_file(mut self, path: &Path) -> Self {
        self.file = Some(path.to_path_buf());
        self
    }

    /// The problems, entry by entry in file order (within an entry, in the order the checks
    /// run).
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// The config file the problems are in, when the config was loaded from a file.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Iterates over the problems.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// The problems, by value.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.errors
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

fn render(file: Option<&Path>, errors: &[ConfigError]) -> String {
    let count = match errors.len() {
        1 => "1 problem".to_owned(),
        n => format!("{n} problems"),
    };
    let mut out = match file {
        Some(file) => format!("the config `{}` has {count}:", file.display()),
        None => format!("the config has {count}:"),
    };
    for error in errors {
        out.push_str("\n  - ");
        out.push_str(&error.to_string());
    }
    out
}

/// Our two sections of `extra_config`, each parsed into a tree and read.
fn read_config(sections: &Sections<'_>, p: &mut Problems, base: &Path) -> Config {
    let mut config = Config::default();
    let mut budget = Budget::default();
    config.gateway = gateway::read(sections, p);
    if let Some(raw) = sections.gateway("endpoints") {
        let hosts = match sections.gateway("host") {
            Some(raw) => {
                let tree = tree(raw, "host", sections.text, &mut Budget::default(), p);
                tree.and_then(|tree| endpoints::read_hosts(&Node::new(&tree, "host"), p))
                    .unwrap_or_default()
            }
            None => Vec::new(),
        };
        let mut reading = endpoints::Reading {
            text: sections.text,
            budget: &mut budget,
            problems: p,
        };
        config.endpoints = endpoints::read_endpoints(raw, &hosts, &mut reading);
    }
    let Some(extra) = &sections.extra_config else {
        return config;
    };
    if let Some(raw) = extra.not_object {
        if let Some(tree) = tree(raw, "extra_config", sections.text, &mut budget, p) {
            // Reports what it is instead of an object.
            Node::new(&tree, "extra_config").object(p, &Keys::ANY);
        }
        return config;
    }
    warn_about_near_misses(&extra.other_keys);
    if let Some(raw) = extra.redis {
        let path = "extra_config.redis";
        if let Some(tree) = tree(raw, path, sections.text, &mut budget, p) {
            config.redis = redis::read_redis(&Node::new(&tree, path), p, base);
        }
    }
    if let Some(raw) = extra.opentelemetry {
        let path = format!(
            "extra_config{}",
            reader::key_segment(OPENTELEMETRY_NAMESPACE)
        );
        if let Some(tree) = tree(raw, &path, sections.text, &mut budget, p) {
            config.gateway.prometheus = gateway::read_prometheus(&Node::new(&tree, path), p);
        }
    }
    if let Some(raw) = extra.plugins {
        let path = format!("extra_config{}", reader::key_segment(PLUGIN_NAMESPACE));
        if let Some(tree) = tree(raw, &path, sections.text, &mut budget, p) {
            let node = Node::new(&tree, path);
            config.plugins = read_plugins(&node, sections.text, &mut config.gateway, p);
        }
    }
    config
}

/// `extra_config["plugin/redplug"]`: each plugin's config, kept as written for its own serde
/// type to check.
fn read_plugins(
    node: &Node<'_>,
    text: &str,
    gateway: &mut GatewayConfig,
    p: &mut Problems,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut plugins = std::collections::BTreeMap::new();
    let Value::Object(_) = node.json().value else {
        p.add(node.invalid(format!(
            "is {}, but `{PLUGIN_NAMESPACE}` takes an object with one entry per plugin, such as \
             {{\"counter\": {{\"limit\": 10}}}}",
            node.kind()
        )));
        return plugins;
    };
    let Some(object) = node.object(p, &Keys::ANY) else {
        return plugins;
    };
    for (name, value) in object.entries() {
        if name == MAX_BODY_BYTES_KEY {
            if let Some(bytes) = value
                .integer(p, gateway::BODY_BYTES)
                .and_then(|bytes| usize::try_from(bytes).ok())
            {
                gateway.max_body_bytes = bytes;
            }
            continue;
        }
        match value.json().to_serde() {
            Ok(config) => {
                plugins.insert(name.to_owned(), config);
            }
            Err(at) => {
                let (line, column) = line_and_column(text, at);
                p.add(value.problem(format!(
                    "holds a number too large for any number type (at line {line}, column \
                     {column}); write a smaller one"
                )));
            }
        }
    }
    plugins
}

/// Parses one section into a tree and reports its repeated keys; `None` after reporting why
/// it could not be read.
fn tree<'a>(
    raw: Raw<'a>,
    path: &str,
    text: &str,
    budget: &mut Budget,
    p: &mut Problems,
) -> Option<Json<'a>> {
    match json::parse(raw.text, raw.at, budget) {
        Ok(tree) => {
            report_repeats(&tree, path, text, p);
            Some(tree)
        }
        Err(refused) => {
            p.add(refusal(refused, path, text));
            None
        }
    }
}

/// Why a section at `path` could not be read.
fn refusal(refused: Refused, path: &str, text: &str) -> ConfigError {
    let position = |at: usize| {
        let (line, column) = line_and_column(text, at);
        format!("line {line}, column {column}")
    };
    let message = match refused {
        Refused::TooManyValues => format!(
            "holds more values than redplug reads: its sections may hold {} values in all \
             (objects, arrays, strings, numbers...); a config that size is not what a \
             gateway needs",
            json::MAX_VALUES
        ),
        Refused::TooDeep(at) => format!(
            "nests objects and arrays more than {} levels deep (at {}); flatten it",
            json::MAX_DEPTH,
            position(at)
        ),
        Refused::Unreadable(at, why) => format!("cannot be read at {}: {why}", position(at)),
    };
    ConfigError {
        path: path.to_owned(),
        message,
        value: None,
    }
}

/// Reports every key that appears twice in one object of `json`, wherever it is.
fn report_repeats(json: &Json<'_>, path: &str, text: &str, p: &mut Problems) {
    match &json.value {
        Value::Object(entries) => {
            let mut seen = std::collections::HashSet::with_capacity(entries.len());
            for entry in entries {
                let at = format!("{path}{}", reader::key_segment(&entry.key));
                if !seen.insert(&*entry.key) {
                    p.add(source::duplicate(&at, text, entry.value.at));
                }
                report_repeats(&entry.value, &at, text, p);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                report_repeats(item, &format!("{path}[{index}]"), text, p);
            }
        }
        _ => {}
    }
}

/// `extra_config` holds every gateway namespace, so a key we do not know cannot be an error;
/// a misspelling of ours would silently leave Redis unconfigured, so it is worth a warning.
fn warn_about_near_misses(keys: &[String]) {
    for key in keys {
        for ours in ["redis", PLUGIN_NAMESPACE] {
            if strsim::normalized_damerau_levenshtein(key, ours) >= 0.75 {
                tracing::warn!(
                    "extra_config{} is ignored; if it is meant for redplug, rename it to \
                     {ours:?}",
                    reader::key_segment(key)
                );
            }
        }
    }
}
