//! Reading and validating the gateway config: `extra_config.redis` and
//! `extra_config["plugin/redplug"]`.

mod model;

pub use model::*;
