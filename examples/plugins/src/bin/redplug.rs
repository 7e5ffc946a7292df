//! The `redplug` CLI with the example plugins linked in: `redplug check <config.json>` and
//! `redplug plugins`. A gateway binary embeds the same CLI with the same one call.

use std::process::ExitCode;

// Plugins register through `inventory` only when their crate is linked; naming the crate once
// is enough.
use redplug_example_plugins as _;

fn main() -> ExitCode {
    redplug_runtime::cli::run()
}
