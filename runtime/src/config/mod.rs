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
mod model;
mod options;
mod reader;
mod redis;
mod tls;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use model::*;

use reader::{Keys, Node, Problems};

/// The key under `extra_config` that holds each plugin's own config.
pub const PLUGIN_NAMESPACE: &str = "plugin/redplug";

/// Parses and validates a whole gateway config. Relative TLS file paths are read from the
/// current directory.
pub fn parse(json: &str) -> Result<Config, ConfigErrors> {
    parse_with_base(json, Path::new(""))
}

/// Parses and validates a whole gateway config, reading relative TLS file paths from
/// `base_dir`.
pub fn parse_with_base(json: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let json = json.strip_prefix('\u{feff}').unwrap_or(json);
    let root: Value =
        serde_json::from_str(json).map_err(|e| ConfigErrors::one(syntax_error(&e)))?;
    let mut problems = Problems::default();
    let config = read_config(&Node::root(&root), &mut problems, base_dir);
    match ConfigErrors::new(problems.into_vec(), None) {
        Some(errors) => Err(errors),
        None => Ok(config),
    }
}

/// Reads, parses and validates the config file at `path`. Relative TLS file paths are read from
/// the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let json = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::one(ConfigError {
            path: String::new(),
            message: format!("cannot read the config file `{}`: {e}", path.display()),
            value: None,
        })
        .in_file(path)
    })?;
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

/// serde_json reports `<what> at line L column C`; we keep its description and restate the
/// position in our words.
fn syntax_error(error: &serde_json::Error) -> ConfigError {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let what = text.strip_suffix(&suffix).unwrap_or(&text);
    ConfigError {
        path: String::new(),
        message: format!(
            "the file is not valid JSON: {what} at line {}, column {}; fix the syntax there \
             (comments and trailing commas are not allowed in JSON)",
            error.line(),
            error.column()
        ),
        value: None,
    }
}

/// The top level: only `extra_config` matters, and within it only our two namespaces.
fn read_config(root: &Node<'_>, p: &mut Problems, base: &Path) -> Config {
    let mut config = Config::default();
    let Some(top) = root.object(p, &Keys::ANY) else {
        return config;
    };
    let Some(extra) = top.get("extra_config") else {
        return config;
    };
    let Some(extra) = extra.object(p, &Keys::ANY) else {
        return config;
    };
    warn_about_near_misses(&extra);
    if let Some(redis) = extra.get("redis") {
        config.redis = redis::read_redis(&redis, p, base);
    }
    if let Some(plugins) = extra.get(PLUGIN_NAMESPACE) {
        if let Some(map) = plugins.value().as_object() {
            config.plugins = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        } else {
            p.add(plugins.invalid(format!(
                "is {}, but `{PLUGIN_NAMESPACE}` takes an object with one entry per plugin, \
                 such as {{\"counter\": {{\"limit\": 10}}}}",
                reader::kind(plugins.value())
            )));
        }
    }
    config
}

/// `extra_config` holds every gateway namespace, so a key we do not know cannot be an error;
/// a misspelling of ours would silently leave Redis unconfigured, so it is worth a warning.
fn warn_about_near_misses(extra: &reader::Object<'_>) {
    for key in extra.keys() {
        for ours in ["redis", PLUGIN_NAMESPACE] {
            if key != ours && strsim::normalized_damerau_levenshtein(key, ours) >= 0.75 {
                tracing::warn!(
                    "extra_config[{key:?}] is ignored; if it is meant for redplug, rename it to \
                     {ours:?}"
                );
            }
        }
    }
}
