//! Plugins' `init` and `shutdown` hooks: `init` once per instance after every plugin is built,
//! in build order; `shutdown` once per initialized instance, in reverse order, before the
//! connections close. A hook that panics is treated as one that failed.
//!
//! Right before an instance's `init`, its Lua scripts are loaded into the servers it holds
//! (see [`crate::scripts`]), so that `init` and the first request find them there.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use redplug::PluginError;

use crate::error::StartupError;
use crate::pipeline::panic_message;
use crate::registry::PluginEntry;
use crate::scripts::Preloader;

/// Loads each instance's scripts and runs its `init`, in order, and stops at the first that
/// fails; the instances initialized before it are shut down again (in reverse), and the
/// failure names the plugin and where it runs.
pub(crate) async fn init(plugins: &[PluginEntry]) -> Result<(), StartupError> {
    let mut scripts = Preloader::default();
    for (done, entry) in plugins.iter().enumerate() {
        if let Err(error) = scripts.load(entry).await {
            shutdown(&plugins[..done]).await;
            return Err(error);
        }
        let hook = AssertUnwindSafe(entry.middleware.init()).catch_unwind();
        let error = match hook.await {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => error,
            Err(panic) => PluginError::new(format!("panicked: {}", panic_message(&*panic))),
        };
        shutdown(&plugins[..done]).await;
        return Err(StartupError::Init {
            plugin: entry.registration.name.to_owned(),
            scope: entry.scope.to_string(),
            source: error,
        });
    }
    Ok(())
}

/// Runs `shutdown` on every instance in reverse order. A hook that panics is logged and the
/// others still run.
pub(crate) async fn shutdown(plugins: &[PluginEntry]) {
    for entry in plugins.iter().rev() {
        let hook = AssertUnwindSafe(entry.middleware.shutdown()).catch_unwind();
        if let Err(panic) = hook.await {
            tracing::error!(
                plugin = entry.registration.name,
                scope = %entry.scope,
                panic = panic_message(&*panic),
                "plugin panicked in its shutdown hook"
            );
        }
    }
}
