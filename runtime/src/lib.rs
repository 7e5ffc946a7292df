//! # redplug-runtime
//!
//! The host side of redplug: reads the gateway's config, builds every Redis pool and cluster
//! once, builds every registered plugin with its connections injected, and runs plugins.

mod blocking;
pub mod cli;
pub mod cluster;
mod coalesce;
pub mod config;
pub mod connect;
pub mod duration;
mod error;
#[cfg(feature = "tower")]
pub mod layer;
pub mod maintenance;
pub mod pipeline;
pub mod pool;
pub mod registry;
pub mod retry;
mod runtime;
pub mod telemetry;
pub mod tls;

pub use error::{StartupError, UnresolvedNeed};
pub use runtime::{PluginRef, Runtime, RuntimeBuilder};
