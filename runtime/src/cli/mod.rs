//! The `redplug` command line, for a host binary to embed with one call:
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! // Link the crates that hold your plugins, or `redplug check` cannot see them.
//! // use my_plugins as _;
//!
//! fn main() -> ExitCode {
//!     redplug_runtime::cli::run()
//! }
//! ```
//!
//! ## Commands
//!
//! - `redplug check <config.json> [--connect] [--timeout 5s] [--format text|json]` validates the
//!   gateway config and reports every problem in it at once, including plugin names that the
//!   endpoints list but no linked plugin has, and settings a plugin's config type refuses. With
//!   a valid config it then lists every plugin linked into the binary, whether each connection
//!   the plugin asks for is configured (with a did-you-mean for near names), where the plugin
//!   runs (once at the service level, or at the endpoints and backends that list it), and each
//!   endpoint's chains with the settings every instance is built with. Names are resolved
//!   against the file; nothing connects unless `--connect` is given, which also PINGs every
//!   pool and cluster and reports the round-trip time, each attempt bounded by `--timeout`.
//! - `redplug plugins [--format text|json]` lists the plugins linked into the binary: name, Rust
//!   type, where it is declared, the connections it asks for, and its Lua scripts
//!   (`#[redis_script("...")]`: field, file, SHA1), which the runtime loads into the servers of
//!   those connections at startup. `check` lists the scripts too.
//!
//! Exit status: 0 when everything checked is fine, 1 when `check` found a problem (or output
//! could not be written), 2 for bad command-line arguments.
//!
//! ## JSON output (`--format json`)
//!
//! One JSON document on stdout; nothing on stderr. Fields are only ever added, under the same
//! `version`.
//!
//! `redplug plugins`:
//!
//! ```json
//! { "version": 1,
//!   "plugins": [
//!     { "name": "counter", "type": "my_plugins::Counter",
//!       "location": { "file": "src/counter.rs", "line": 12 },
//!       "needs": [ { "field": "redis", "kind": "pool", "name": "redis_at_eight", "optional": false } ],
//!       "scripts": [ { "field": "limit", "path": "scripts/limit.lua",
//!                      "sha1": "e0e1f9fabfc9d4800c877a703b823ac0578ff8db" } ] } ] }
//! ```
//!
//! `redplug check`:
//!
//! ```json
//! { "version": 1,
//!   "config": "krakend.json",
//!   "ok": false,
//!   "config_errors": [ { "path": "extra_config.redis.connection_pools[0].dial_timeout",
//!                        "value": "\"5x\"", "message": "is not a duration: ..." } ],
//!   "connections": [ { "kind": "pool", "name": "redis_at_eight", "addresses": ["localhost:6379"], "db": 8 } ],
//!   "plugins": [
//!     { "name": "counter", "type": "my_plugins::Counter",
//!       "location": { "file": "src/counter.rs", "line": 12 },
//!       "config": { "path": "extra_config[\"plugin/redplug\"][\"counter\"]", "present": false },
//!       "runs": { "service": false, "places": 1 },
//!       "needs": [ { "field": "redis", "kind": "pool", "name": "redis_at_eigth", "optional": false,
//!                    "resolved": false, "did_you_mean": "redis_at_eight", "configured_as": null } ],
//!       "scripts": [] } ],
//!   "endpoints": [
//!     { "method": "GET", "endpoint": "/v1/users/{id}", "path": "endpoints[0]",
//!       "chain": [ { "name": "counter", "settings": null } ],
//!       "backends": [ { "method": "GET", "hosts": ["http://users:8080"], "url_pattern": "/users/{id}",
//!                       "path": "endpoints[0].backend[0]", "chain": [] } ] } ],
//!   "problems": [ "plugin `counter` (...), field `redis`: ... did you mean `redis_at_eight`? ..." ],
//!   "warnings": [],
//!   "connect": [ { "kind": "pool", "name": "redis_at_eight", "ok": true, "latency_ms": 0.18, "error": null } ] }
//! ```
//!
//! - `config_errors`: every problem in the file, with its JSON path (empty for problems with the
//!   file as a whole) and the offending value as JSON text (`null` when not shown).
//! - `connections`: the configured pools and clusters; `db` is given for pools only. For a pool
//!   behind Sentinel, `sentinel_master` is the master's name and `addresses` are the sentinels.
//!   Empty when the config has errors.
//! - `runs`: `service` is true for a plugin no endpoint or backend lists (it runs once, at the
//!   service level); otherwise `places` counts the listings, each its own instance.
//! - `endpoints`: every endpoint in file order, with the chain of the endpoint and of each
//!   backend. A link's `settings` is the path of the settings its instance is built with (the
//!   place's own, else the service level's), `null` for the plugin's defaults. Empty when the
//!   config has errors.
//! - `plugins`: empty when the config has errors. `resolved` is false for a name that is not
//!   configured; `did_you_mean` is a configured name of the same kind close to it, and
//!   `configured_as` is `"pool"` or `"cluster"` when the name exists as the other kind.
//!   `scripts` are the plugin's Lua scripts, as `redplug plugins` lists them: `path` is the file
//!   as the attribute names it, relative to the plugin crate's `Cargo.toml`, and `sha1` the name
//!   `EVALSHA` and `SCRIPT EXISTS` know it by. `check` does not run them; a script that does not
//!   compile stops the runtime's startup.
//! - `problems`: every reason `ok` is false, as sentences. `warnings` do not affect `ok`.
//! - `connect`: only with `--connect`; `latency_ms` (two decimals) is set when `ok` is true,
//!   `error` when it is false.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use redis::aio::ConnectionLike;
use redplug::{Need, NeedKind, Registration, SourceLocation};
use serde::Serialize;

use futures_util::StreamExt;

use crate::config::text::{invisible_difference, shown};
use crate::config::{self, Config, ConfigErrors, PoolServer, RedisConfig, ScopeConfig};
use crate::error::StartupError;
use crate::runtime::Runtime;
use crate::{names, registry, scopes};
use redplug::duration::{GoDuration, parse_duration};

mod serve;

/// The version of the JSON documents this module writes.
const JSON_VERSION: u32 = 1;

/// Runs the CLI on the process's arguments, writing to stdout and stderr.
///
/// Builds a Tokio runtime of its own when it needs one, so call it from `main`, not from async
/// code.
pub fn run() -> ExitCode {
    run_from(std::env::args_os())
}

/// Runs the CLI on `args` (program name first, as [`std::env::args_os`] gives them), writing to
/// stdout and stderr.
pub fn run_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_with(args, &mut io::stdout(), &mut io::stderr())
}

/// Runs the CLI on `args` (program name first), writing its report to `out` and errors to
/// `err`. For tests and for hosts that capture the output.
pub fn run_with<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let text = error.render().to_string();
            return if error.use_stderr() {
                let _ = err.write_all(text.as_bytes());
                ExitCode::from(2)
            } else {
                // `--help` and `--version`.
                match out.write_all(text.as_bytes()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(_) => ExitCode::FAILURE,
                }
            };
        }
    };
    let outcome = match cli.command {
        Command::Check(args) => check(&args, out, err),
        Command::Plugins(args) => plugins(&args, out),
        Command::Serve(args) => serve::serve(&args, out, err),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            let _ = writeln!(err, "error: cannot write the report: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Checks a gateway config and the plugins linked into this binary.
#[derive(Parser)]
#[command(
    name = "redplug",
    version,
    about = "Check a redplug gateway config and the plugins linked into this binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a gateway config and check that every registered plugin's connections resolve.
    Check(CheckArgs),
    /// List the plugins linked into this binary and the connections each needs.
    Plugins(PluginsArgs),
    /// Serve the config's endpoints as a gateway, with their plugins, until SIGTERM or SIGINT.
    Serve(serve::ServeArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// The gateway's KrakenD-style JSON config file.
    config: PathBuf,
    /// Also connect to every pool and cluster and PING it.
    #[arg(long)]
    connect: bool,
    /// How long connecting to and PINGing one pool or cluster may take (a Go duration).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    timeout: Duration,
    /// Human-readable text, or one JSON document (see the module docs for its fields).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Args)]
struct PluginsArgs {
    /// Human-readable text, or one JSON document.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text).map_err(|e| e.to_string())?;
    match duration.to_std() {
        Some(timeout) if !timeout.is_zero() => Ok(timeout),
        _ => Err("the timeout must be positive, such as \"5s\"".to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// The reports, as the JSON documents spell them. Text output is rendered from the same values.

#[derive(Serialize)]
struct PluginsReport {
    version: u32,
    plugins: Vec<PluginInfo>,
}

#[derive(Serialize)]
struct PluginInfo {
    name: &'static str,
    #[serde(rename = "type")]
    type_name: &'static str,
    location: Location,
    needs: Vec<NeedInfo>,
    scripts: Vec<ScriptInfo>,
}

/// One `#[redis_script("...")]` field of a plugin.
#[derive(Serialize)]
struct ScriptInfo {
    field: &'static str,
    path: &'static str,
    sha1: &'static str,
}

#[derive(Serialize)]
struct Location {
    file: &'static str,
    line: u32,
}

#[derive(Serialize)]
struct NeedInfo {
    field: &'static str,
    kind: &'static str,
    name: &'static str,
    optional: bool,
}

#[derive(Serialize)]
struct CheckReport {
    version: u32,
    config: String,
    ok: bool,
    config_errors: Vec<ConfigErrorInfo>,
    connections: Vec<ConnectionInfo>,
    plugins: Vec<PluginCheck>,
    endpoints: Vec<EndpointCheck>,
    problems: Vec<String>,
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect: Option<Vec<PingResult>>,
}

#[derive(Serialize)]
struct ConfigErrorInfo {
    path: String,
    value: Option<String>,
    message: String,
}

#[derive(Serialize)]
struct ConnectionInfo {
    kind: &'static str,
    name: String,
    addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    db: Option<i64>,
    /// For a pool behind Sentinel: the master's name; `addresses` are the sentinels.
    #[serde(skip_serializing_if = "Option::is_none")]
    sentinel_master: Option<String>,
}

#[derive(Serialize)]
struct PluginCheck {
    name: &'static str,
    #[serde(rename = "type")]
    type_name: &'static str,
    location: Location,
    config: PluginConfigInfo,
    runs: RunsInfo,
    needs: Vec<NeedCheck>,
    scripts: Vec<ScriptInfo>,
}

/// Where a plugin runs: at the service level (listed nowhere), or at `places` endpoints and
/// backends.
#[derive(Serialize)]
struct RunsInfo {
    service: bool,
    places: usize,
}

#[derive(Serialize)]
struct EndpointCheck {
    method: String,
    endpoint: String,
    path: String,
    chain: Vec<ChainLink>,
    backends: Vec<BackendCheck>,
}

#[derive(Serialize)]
struct BackendCheck {
    method: String,
    hosts: Vec<String>,
    url_pattern: String,
    path: String,
    chain: Vec<ChainLink>,
}

/// One plugin instance of a chain, and the settings it is built with.
#[derive(Serialize)]
struct ChainLink {
    name: String,
    /// Where its settings are: the place's own, else the service level's; `null` when neither
    /// gives any (the plugin's defaults).
    settings: Option<String>,
}

#[derive(Serialize)]
struct PluginConfigInfo {
    path: String,
    present: bool,
}

#[derive(Serialize)]
struct NeedCheck {
    #[serde(flatten)]
    need: NeedInfo,
    resolved: bool,
    did_you_mean: Option<String>,
    configured_as: Option<&'static str>,
}

#[derive(Serialize)]
struct PingResult {
    kind: &'static str,
    name: String,
    ok: bool,
    latency_ms: Option<f64>,
    error: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// `redplug plugins`

fn plugins(args: &PluginsArgs, out: &mut dyn Write) -> io::Result<bool> {
    let report = PluginsReport {
        version: JSON_VERSION,
        plugins: registrations().into_iter().map(plugin_info).collect(),
    };
    match args.format {
        Format::Json => write_json(out, &report)?,
        Format::Text => out.write_all(render_plugins(&report).as_bytes())?,
    }
    Ok(true)
}

fn render_plugins(report: &PluginsReport) -> String {
    let mut text = String::new();
    if report.plugins.is_empty() {
        text.push_str(NO_PLUGINS);
        text.push('\n');
        return text;
    }
    let _ = writeln!(
        text,
        "{}:",
        count(
            report.plugins.len(),
            "plugin registered",
            "plugins registered"
        )
    );
    let mut rows = Vec::new();
    for plugin in &report.plugins {
        rows.push(Row::new(
            1,
            [
                plugin.name.to_owned(),
                plugin.type_name.to_owned(),
                location(&plugin.location),
            ],
        ));
        if plugin.needs.is_empty() {
            rows.push(Row::free(2, "needs no Redis connection"));
        }
        for need in &plugin.needs {
            rows.push(Row::new(
                2,
                [
                    need.field.to_owned(),
                    format!("{} `{}`", need.kind, need.name),
                    if need.optional {
                        "optional"
                    } else {
                        "required"
                    }
                    .to_owned(),
                ],
            ));
        }
        script_rows(&plugin.scripts, &mut rows);
    }
    text.push_str(&table(&rows));
    text
}

// ---------------------------------------------------------------------------------------------
// `redplug check`

fn check(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<bool> {
    let mut report = CheckReport {
        version: JSON_VERSION,
        config: args.config.display().to_string(),
        ok: true,
        config_errors: Vec::new(),
        connections: Vec::new(),
        plugins: Vec::new(),
        endpoints: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
        connect: None,
    };
    let registrations = registrations();
    // The file on its own, then what it lists against the plugins linked into this binary: both
    // are problems in the file, with their paths, as startup reports them.
    let loaded = config::load(&args.config).and_then(|config| {
        let mut problems = scopes::check(&config, &registrations);
        problems.extend(registry::check_configs(&registrations, &config));
        match ConfigErrors::new(problems, Some(args.config.clone())) {
            Some(errors) => Err(errors),
            None => Ok(config),
        }
    });
    match loaded {
        Err(errors) => {
            report.problems.push(errors.to_string());
            report.config_errors = errors
                .into_iter()
                .map(|e| ConfigErrorInfo {
                    path: e.path,
                    value: e.value,
                    message: e.message,
                })
                .collect();
        }
        Ok(config) => {
            report
                .warnings
                .extend(config.warnings.iter().map(ToString::to_string));
            report.connections = connections(&config.redis);
            check_plugins(&config, &registrations, &mut report);
            report.endpoints = endpoints(&config);
            if args.connect {
                report.connect = Some(connect(&config, args.timeout, &mut report.problems));
            }
        }
    }
    report.ok = report.problems.is_empty();

    match args.format {
        Format::Json => write_json(out, &report)?,
        Format::Text => {
            out.write_all(render_check(&report).as_bytes())?;
            for warning in &report.warnings {
                writeln!(err, "warning: {warning}")?;
            }
            for problem in &report.problems {
                writeln!(err, "error: {problem}")?;
            }
        }
    }
    Ok(report.ok)
}

fn connections(redis: &RedisConfig) -> Vec<ConnectionInfo> {
    let pools = redis.connection_pools.iter().map(|pool| ConnectionInfo {
        kind: NeedKind::Pool.as_str(),
        name: pool.name.clone(),
        addresses: match &pool.server {
            PoolServer::Address(address) => vec![address.to_string()],
            PoolServer::Sentinel(sentinel) => {
                sentinel.addresses.iter().map(ToString::to_string).collect()
            }
        },
        db: Some(pool.db),
        sentinel_master: match &pool.server {
            PoolServer::Address(_) => None,
            PoolServer::Sentinel(sentinel) => Some(sentinel.master_name.clone()),
        },
    });
    let clusters = redis.clusters.iter().map(|cluster| ConnectionInfo {
        kind: NeedKind::Cluster.as_str(),
        name: cluster.name.clone(),
        addresses: cluster.addresses.iter().map(ToString::to_string).collect(),
        db: None,
        sentinel_master: None,
    });
    pools.chain(clusters).collect()
}

/// Resolves every need of every registered plugin against the names in the file, the way
/// startup resolves them against the built connections, without connecting to anything.
fn check_plugins(
    config: &Config,
    registrations: &[&'static Registration],
    report: &mut CheckReport,
) {
    let pools = config.redis.pool_names();
    let clusters = config.redis.cluster_names();
    let mut places: HashMap<&str, usize> = HashMap::new();
    for (scope, _) in registry::scopes(config) {
        for plugin in &scope.plugins {
            *places.entry(plugin.name.as_str()).or_default() += 1;
        }
    }

    if registrations.is_empty() {
        report.warnings.push(NO_PLUGINS.to_owned());
    }
    if let Err(error) = registry::check_unique(registrations) {
        report.problems.push(error.to_string());
    }

    let mut unresolved = Vec::new();
    for registration in registrations {
        let mut resolutions = Vec::with_capacity(registration.needs.len());
        for need in registration.needs {
            let configured = match need.kind {
                NeedKind::Pool => &pools,
                NeedKind::Cluster => &clusters,
            };
            let mut check = NeedCheck {
                need: need_info(need),
                resolved: configured.contains(&need.name),
                did_you_mean: None,
                configured_as: None,
            };
            if !check.resolved {
                let missing = names::unresolved_need(registration, need, &pools, &clusters);
                check.did_you_mean.clone_from(&missing.did_you_mean);
                check.configured_as = missing.other_kind.map(NeedKind::as_str);
                if !need.optional {
                    unresolved.push(missing);
                }
            }
            resolutions.push(check);
        }
        let PluginInfo {
            name,
            type_name,
            location,
            scripts,
            ..
        } = plugin_info(registration);
        report.plugins.push(PluginCheck {
            name,
            type_name,
            location,
            config: PluginConfigInfo {
                path: registry::service_settings_path(name),
                present: config.plugins.contains_key(name),
            },
            runs: RunsInfo {
                service: !places.contains_key(name),
                places: places.get(name).copied().unwrap_or(0),
            },
            needs: resolutions,
            scripts,
        });
    }
    if !unresolved.is_empty() {
        report
            .problems
            .push(StartupError::Unresolved(unresolved).to_string());
    }

    let registered: Vec<&str> = registrations.iter().map(|r| r.name).collect();
    for name in config.plugins.keys() {
        if !registered.contains(&name.as_str()) {
            let hint = names::closest(name, &registered)
                .map(|guess| format!("; did you mean `{}`?", shown(guess)))
                .unwrap_or_default();
            report.warnings.push(format!(
                "{} configures a plugin that is not registered in this binary, so it is \
                 ignored{hint}",
                registry::service_settings_path(name)
            ));
        }
    }
}

/// Every endpoint with the chain of each of its scopes and the settings of each instance.
fn endpoints(config: &Config) -> Vec<EndpointCheck> {
    let chain = |scope: Option<&ScopeConfig>| -> Vec<ChainLink> {
        let listed = scope.into_iter().flat_map(|scope| &scope.plugins);
        listed
            .map(|plugin| {
                let (settings, at) = registry::settings(config, &plugin.name, Some(plugin));
                ChainLink {
                    name: plugin.name.clone(),
                    settings: settings.map(|_| at),
                }
            })
            .collect()
    };
    config
        .endpoints
        .iter()
        .map(|endpoint| EndpointCheck {
            method: endpoint.method.to_string(),
            endpoint: endpoint.endpoint.clone(),
            path: endpoint.path.clone(),
            chain: chain(endpoint.plugins.as_ref()),
            backends: endpoint
                .backends
                .iter()
                .map(|backend| BackendCheck {
                    method: backend
                        .method
                        .as_ref()
                        .unwrap_or(&endpoint.method)
                        .to_string(),
                    hosts: backend.hosts.clone(),
                    url_pattern: backend.url_pattern.clone(),
                    path: backend.path.clone(),
                    chain: chain(backend.plugins.as_ref()),
                })
                .collect(),
        })
        .collect()
}

fn render_check(report: &CheckReport) -> String {
    let mut text = String::new();
    if !report.config_errors.is_empty() {
        let _ = writeln!(
            text,
            "config {}: {}",
            report.config,
            count(report.config_errors.len(), "problem", "problems")
        );
        return text;
    }

    let _ = writeln!(
        text,
        "config {}: valid, {}",
        report.config,
        count(report.connections.len(), "connection", "connections")
    );
    let rows: Vec<Row> = report
        .connections
        .iter()
        .map(|c| {
            let db = c.db.map(|db| format!("db {db}")).unwrap_or_default();
            Row::new(
                1,
                [
                    c.kind.to_owned(),
                    shown(&c.name).into_owned(),
                    match &c.sentinel_master {
                        Some(master) => format!(
                            "master `{}` via sentinels {}",
                            shown(master),
                            c.addresses.join(", ")
                        ),
                        None => c.addresses.join(", "),
                    },
                    db,
                ],
            )
        })
        .collect();
    text.push_str(&table(&rows));

    text.push('\n');
    if report.plugins.is_empty() {
        let _ = writeln!(text, "{NO_PLUGINS}");
    } else {
        let _ = writeln!(
            text,
            "{}:",
            count(
                report.plugins.len(),
                "plugin registered",
                "plugins registered"
            )
        );
    }
    let mut rows = Vec::new();
    for check in &report.plugins {
        rows.push(Row::new(
            1,
            [
                check.name.to_owned(),
                check.type_name.to_owned(),
                location(&check.location),
            ],
        ));
        for resolution in &check.needs {
            let need = &resolution.need;
            rows.push(Row::new(
                2,
                [
                    need.field.to_owned(),
                    format!("{} `{}`", need.kind, need.name),
                    need_status(resolution),
                ],
            ));
        }
        script_rows(&check.scripts, &mut rows);
        rows.push(Row::free(2, runs(check)));
    }
    text.push_str(&table(&rows));
    render_endpoints(&report.endpoints, &mut text);

    if let Some(pings) = &report.connect {
        let _ = writeln!(text, "\nconnect (PING):");
        let rows: Vec<Row> = pings
            .iter()
            .map(|ping| {
                let outcome = match (ping.latency_ms, &ping.error) {
                    (Some(ms), _) => format!("ok  {ms:.2} ms"),
                    (None, Some(error)) => format!("FAILED  {error}"),
                    (None, None) => "FAILED".to_owned(),
                };
                Row::new(
                    1,
                    [
                        ping.kind.to_owned(),
                        shown(&ping.name).into_owned(),
                        outcome,
                    ],
                )
            })
            .collect();
        text.push_str(&table(&rows));
    }

    text.push('\n');
    if report.ok {
        let _ = writeln!(
            text,
            "ok: the config is valid and every required connection resolves"
        );
    } else {
        let _ = writeln!(
            text,
            "failed: {} (details on stderr)",
            count(report.problems.len(), "problem", "problems")
        );
    }
    text
}

/// Where a plugin of the list runs, and with which service-level config.
fn runs(check: &PluginCheck) -> String {
    let service = check.config.present.then_some(check.config.path.as_str());
    match (check.runs.service, service) {
        (true, Some(at)) => format!("runs once, at the service level, with settings {at}"),
        (true, None) => "runs once, at the service level, with its defaults".to_owned(),
        (false, fallback) => format!(
            "runs at {} (see endpoints); places without settings of their own use {}",
            count(check.runs.places, "place", "places"),
            fallback.unwrap_or("its defaults")
        ),
    }
}

/// The endpoints section: each endpoint's chain, then each backend's, with the settings each
/// instance is built with.
fn render_endpoints(endpoints: &[EndpointCheck], text: &mut String) {
    if endpoints.is_empty() {
        return;
    }
    let _ = writeln!(
        text,
        "\n{}:",
        count(endpoints.len(), "endpoint", "endpoints")
    );
    let mut rows = Vec::new();
    let links = |rows: &mut Vec<Row>, depth: usize, chain: &[ChainLink]| {
        if chain.is_empty() {
            rows.push(Row::free(depth, "no plugins"));
        }
        for link in chain {
            let settings = match &link.settings {
                Some(at) => format!("settings {at}"),
                None => "no settings (the plugin's defaults)".to_owned(),
            };
            rows.push(Row::new(depth, [shown(&link.name).into_owned(), settings]));
        }
    };
    for endpoint in endpoints {
        rows.push(Row::new(
            1,
            [
                format!("{} {}", endpoint.method, shown(&endpoint.endpoint)),
                endpoint.path.clone(),
            ],
        ));
        links(&mut rows, 2, &endpoint.chain);
        for (index, backend) in endpoint.backends.iter().enumerate() {
            let hosts: Vec<String> = backend
                .hosts
                .iter()
                .map(|h| shown(h).into_owned())
                .collect();
            rows.push(Row::new(
                2,
                [
                    format!("backend {index}"),
                    format!(
                        "{} {} on {}",
                        backend.method,
                        shown(&backend.url_pattern),
                        hosts.join(", ")
                    ),
                ],
            ));
            links(&mut rows, 3, &backend.chain);
        }
    }
    text.push_str(&table(&rows));
}

/// A line per script, outside the needs' columns (a script is not a connection).
fn script_rows(scripts: &[ScriptInfo], rows: &mut Vec<Row>) {
    for script in scripts {
        rows.push(Row::free(
            2,
            format!(
                "{}  script {}  sha1 {}  (loaded at startup)",
                script.field, script.path, script.sha1
            ),
        ));
    }
}

fn need_status(check: &NeedCheck) -> String {
    if check.resolved {
        return "ok".to_owned();
    }
    let mut status = if check.need.optional {
        "not configured (optional: the field is None)".to_owned()
    } else {
        "NOT CONFIGURED".to_owned()
    };
    if let Some(other) = check.configured_as {
        let _ = write!(
            status,
            "; `{}` is a {other}, not a {}",
            shown(check.need.name),
            check.need.kind
        );
    } else if let Some(guess) = &check.did_you_mean {
        let _ = write!(status, "; did you mean `{}`?", shown(guess));
        if let Some(difference) = invisible_difference(check.need.name, guess) {
            let _ = write!(status, " ({difference})");
        }
    }
    status
}

// ---------------------------------------------------------------------------------------------
// `redplug check --connect`

/// How many pools and clusters `--connect` reaches at the same time.
const PINGS_AT_ONCE: usize = 16;

/// PINGs every pool and cluster, each from a runtime of its own, so that one that cannot start
/// (TLS files, `min_idle_conns` against a server that is down) is reported under its own name
/// and does not hide the others.
fn connect(config: &Config, timeout: Duration, problems: &mut Vec<String>) -> Vec<PingResult> {
    let targets: Vec<(NeedKind, String, Config)> = config
        .redis
        .connection_pools
        .iter()
        .map(|pool| {
            let only = RedisConfig {
                connection_pools: vec![pool.clone()],
                clusters: Vec::new(),
            };
            (NeedKind::Pool, pool.name.clone(), only)
        })
        .chain(config.redis.clusters.iter().map(|cluster| {
            let only = RedisConfig {
                connection_pools: Vec::new(),
                clusters: vec![cluster.clone()],
            };
            (NeedKind::Cluster, cluster.name.clone(), only)
        }))
        .map(|(kind, name, redis)| {
            let config = Config {
                redis,
                ..Config::default()
            };
            (kind, name, config)
        })
        .collect();

    let tokio = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(tokio) => tokio,
        Err(error) => {
            problems.push(format!("cannot start an async runtime to connect: {error}"));
            return Vec::new();
        }
    };
    // A few at a time: thousands of pools pinged at once would make thousands of connections
    // at once, filling the server's `maxclients` with our own check.
    let results: Vec<PingResult> = tokio.block_on(
        futures_util::stream::iter(
            targets
                .into_iter()
                .map(|(kind, name, config)| ping(kind, name, config, timeout)),
        )
        .buffered(PINGS_AT_ONCE)
        .collect(),
    );
    let mut full = 0;
    for result in &results {
        if let Some(error) = &result.error {
            if error.contains("max number of clients") {
                full += 1;
            }
            // Errors from the pool already start with its name; clusters' may not.
            let subject = format!("{} `{}`", result.kind, shown(&result.name));
            if error.starts_with(&subject) {
                problems.push(error.clone());
            } else {
                problems.push(format!("{subject}: {error}"));
            }
        }
    }
    if full > 1 {
        problems.push(format!(
            "{full} pools and clusters were turned away because their server is at its \
             `maxclients` limit, not because it is down: close clients elsewhere or raise \
             maxclients on the server"
        ));
    }
    results
}

async fn ping(kind: NeedKind, name: String, config: Config, timeout: Duration) -> PingResult {
    let attempt = async {
        let runtime = Runtime::builder()
            .registrations([])
            .start(config)
            .await
            .map_err(|e| e.to_string())?;
        let selectors = runtime.selectors();
        let latency = match kind {
            NeedKind::Pool => match selectors.pool(&name) {
                Some(mut pool) => round_trip(&mut pool).await,
                None => Err("was not built".to_owned()),
            },
            NeedKind::Cluster => match selectors.cluster(&name) {
                Some(mut cluster) => round_trip(&mut cluster).await,
                None => Err("was not built".to_owned()),
            },
        };
        runtime.shutdown().await;
        latency
    };
    let outcome = match tokio::time::timeout(timeout, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!(
            "no answer within {} (raise it with --timeout)",
            GoDuration::from_std(timeout).unwrap_or(GoDuration::MAX)
        )),
    };
    match outcome {
        Ok(latency) => PingResult {
            kind: kind.as_str(),
            name,
            ok: true,
            latency_ms: Some((latency.as_secs_f64() * 100_000.0).round() / 100.0),
            error: None,
        },
        Err(error) => PingResult {
            kind: kind.as_str(),
            name,
            ok: false,
            latency_ms: None,
            error: Some(error),
        },
    }
}

/// The time of one PING on an open connection. A first PING opens the connection (dial, TLS,
/// AUTH, SELECT), so the number reported is the round trip a request would see.
async fn round_trip(connection: &mut impl ConnectionLike) -> Result<Duration, String> {
    let ping = redis::cmd("PING");
    ping.query_async::<redis::Value>(connection)
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    ping.query_async::<redis::Value>(connection)
        .await
        .map_err(|e| e.to_string())?;
    Ok(started.elapsed())
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

const NO_PLUGINS: &str = "no plugins are registered: link the crates that hold them into this \
                          binary (`use my_plugins as _;` or `redplug::link!(my_plugins);`)";

/// Every linked registration, in a stable order.
fn registrations() -> Vec<&'static Registration> {
    let mut all: Vec<&'static Registration> = Registration::all().collect();
    all.sort_by_key(|r| (r.name, r.type_name, r.location.file, r.location.line));
    all
}

fn plugin_info(registration: &'static Registration) -> PluginInfo {
    let SourceLocation { file, line } = registration.location;
    PluginInfo {
        name: registration.name,
        type_name: registration.type_name,
        location: Location { file, line },
        needs: registration.needs.iter().map(need_info).collect(),
        scripts: registration
            .scripts
            .iter()
            .map(|script| ScriptInfo {
                field: script.field,
                path: script.script.path(),
                sha1: script.script.sha1(),
            })
            .collect(),
    }
}

fn need_info(need: &'static Need) -> NeedInfo {
    NeedInfo {
        field: need.field,
        kind: need.kind.as_str(),
        name: need.name,
        optional: need.optional,
    }
}

fn location(location: &Location) -> String {
    format!("{}:{}", location.file, location.line)
}

fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn write_json(out: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// One line of a text table: cells aligned with the other rows at the same depth, or free
/// text that takes no part in the alignment.
struct Row {
    depth: usize,
    cells: Vec<String>,
    free: bool,
}

impl Row {
    fn new<const N: usize>(depth: usize, cells: [String; N]) -> Self {
        Self {
            depth,
            cells: cells.into(),
            free: false,
        }
    }

    fn free(depth: usize, text: impl Into<String>) -> Self {
        Self {
            depth,
            cells: vec![text.into()],
            free: true,
        }
    }
}

/// Renders rows with two spaces of indent per depth and columns padded to the widest cell
/// among rows of the same depth, so nested rows line up with each other across groups.
fn table(rows: &[Row]) -> String {
    let mut widths: Vec<Vec<usize>> = Vec::new();
    for row in rows.iter().filter(|row| !row.free) {
        if widths.len() <= row.depth {
            widths.resize(row.depth + 1, Vec::new());
        }
        let columns = &mut widths[row.depth];
        for (i, cell) in row.cells.iter().enumerate() {
            let width = cell.chars().count();
            match columns.get_mut(i) {
                Some(max) => *max = (*max).max(width),
                None => columns.push(width),
            }
        }
    }
    let mut text = String::new();
    for row in rows {
        text.push_str(&"  ".repeat(row.depth));
        let last = row.cells.len().saturating_sub(1);
        for (i, cell) in row.cells.iter().enumerate() {
            text.push_str(cell);
            if i < last {
                let width = widths
                    .get(row.depth)
                    .and_then(|columns| columns.get(i))
                    .copied()
                    .unwrap_or(0);
                let pad = width.saturating_sub(cell.chars().count());
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        // Rows whose trailing cells are empty would otherwise end in spaces.
        while text.ends_with(' ') {
            text.pop();
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{Row, table};

    #[test]
    fn aligns_columns_per_depth() {
        let rows = [
            Row::new(1, ["a".to_owned(), "long-name".to_owned(), "x".to_owned()]),
            Row::new(2, ["field".to_owned(), "pool `p`".to_owned()]),
            Row::free(2, "free text is not aligned"),
            Row::new(1, ["bbb".to_owned(), "n".to_owned(), "y".to_owned()]),
        ];
        assert_eq!(
            table(&rows),
            "  a    long-name  x\n    field  pool `p`\n    free text is not aligned\n  bbb  n          y\n"
        );
    }
}
