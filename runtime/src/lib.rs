//! # redplug-runtime
//!
//! The host side of redplug: reads the gateway's config, builds every Redis pool and cluster
//! once, builds every registered plugin with its connections injected, and runs plugins.

pub mod config;
pub mod duration;
