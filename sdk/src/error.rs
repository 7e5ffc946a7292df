//! Errors a plugin returns from its hooks, and errors building a plugin at startup.

use std::error::Error as StdError;
use std::fmt;

use http::StatusCode;

/// A plugin hook failed. The host answers with [`PluginError::status`] (500 unless set) and
/// logs the message and its cause; the plugin never panics the gateway.
///
/// Any error converts with `?`, so Redis failures need no ceremony:
/// `let n: i64 = self.redis.clone().incr("k", 1).await?;`
#[derive(Debug)]
pub struct PluginError {
    status: StatusCode,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl PluginError {
    /// A failure described by `message`, answered with 500.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            source: None,
        }
    }

    /// The same error, answered with `status` instead of 500.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The same error, recording `source` as its cause.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The HTTP status the host answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message, without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for PluginError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

impl From<redis::RedisError> for PluginError {
    fn from(error: redis::RedisError) -> Self {
        PluginError::new("redis command failed").with_source(error)
    }
}

impl From<std::io::Error> for PluginError {
    fn from(error: std::io::Error) -> Self {
        PluginError::new("i/o failed").with_source(error)
    }
}

impl From<serde_json::Error> for PluginError {
    fn from(error: serde_json::Error) -> Self {
        PluginError::new("json handling failed").with_source(error)
    }
}

impl From<http::Error> for PluginError {
    fn from(error: http::Error) -> Self {
        PluginError::new("building an http message failed").with_source(error)
    }
}

/// Building one plugin at startup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The plugin's own config (under `extra_config["plugin/redplug"]`, or a scope's settings)
    /// did not deserialize.
    #[error("plugin `{plugin}`: its config at `{at}{path}` is invalid: {message}")]
    Config {
        /// The plugin's registered name.
        plugin: String,
        /// Where the config is in the gateway's config file, such as
        /// `extra_config["plugin/redplug"]["counter"]`.
        at: String,
        /// Where inside the plugin's config the problem is (`.limit`, `.rules[2].key`), empty
        /// for the root.
        path: String,
        /// What serde said.
        message: String,
    },
    /// The plugin's config type has no `Default` and the config gives no value for it.
    #[error(
        "plugin `{plugin}` needs a config of type `{type_name}` at `{at}`, and there is none; add it, or implement `Default` for `{type_name}`"
    )]
    MissingConfig {
        /// The plugin's registered name.
        plugin: String,
        /// Where the config would be in the gateway's config file.
        at: String,
        /// The Rust type of the `#[plugin(config)]` field.
        type_name: &'static str,
    },
    /// A required connection was not resolved. The runtime checks every need before building,
    /// so this means a registration's needs list disagrees with its constructor.
    #[error("plugin `{plugin}`: field `{field}` needs {kind} `{name}`, which was not resolved")]
    Unresolved {
        /// The plugin's registered name.
        plugin: String,
        /// The field that needed the connection.
        field: &'static str,
        /// `pool` or `cluster`.
        kind: &'static str,
        /// The configured name the field asked for.
        name: &'static str,
    },
}
