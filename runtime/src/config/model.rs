//! The validated model of `extra_config.redis` and `extra_config["plugin/redplug"]`.
//!
//! Every value here has already been checked and has its default applied: code that builds
//! connections never sees a raw option.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The parts of a gateway config file that redplug reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// `extra_config.redis`.
    pub redis: RedisConfig,
    /// `extra_config["plugin/redplug"]`: each plugin's own config, by plugin name: the service
    /// default a scope falls back to when it gives no settings of its own.
    pub plugins: BTreeMap<String, serde_json::Value>,
    /// `endpoints[]`, in file order.
    pub endpoints: Vec<EndpointConfig>,
    /// The gateway's own top-level settings, for `redplug serve`.
    pub gateway: GatewayConfig,
    /// What the loader accepted but could not honour exactly (a TLS version rustls cannot
    /// speak, a cipher suite it does not implement), in file order. The runtime logs each one
    /// when it starts.
    pub warnings: Vec<ConfigWarning>,
}

/// The gateway's top-level settings that `redplug serve` runs by: KrakenD's keys and defaults,
/// and the body limit of our namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// `port` (default 8080; 0 picks a free port).
    pub port: u16,
    /// `listen_ip` (default: every IPv4 interface, `0.0.0.0`).
    pub listen_ip: std::net::IpAddr,
    /// `timeout`: how long an endpoint may take, unless it sets its own (default 2 s).
    pub timeout: Duration,
    /// `read_header_timeout`: how long a client may take to send a request's headers (default
    /// 10 s; KrakenD's default waits forever).
    pub read_header_timeout: Duration,
    /// `max_header_bytes`: the most a request's headers may take (default 1 MiB, as in Go).
    pub max_header_bytes: usize,
    /// `debug_endpoint`: also serve `/__debug/` (default false).
    pub debug_endpoint: bool,
    /// `extra_config["plugin/redplug"].max_body_bytes`: the largest body a chain buffers for
    /// plugins that read bodies, unless an endpoint sets its own (default 4 MiB).
    pub max_body_bytes: usize,
    /// `extra_config["telemetry/opentelemetry"].exporters.prometheus[]`: where `redplug serve`
    /// serves its metrics for Prometheus to scrape.
    pub prometheus: Vec<PrometheusExporter>,
}

/// One entry of KrakenD's `exporters.prometheus[]`: a `/metrics` endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrometheusExporter {
    /// `name`, for logs.
    pub name: String,
    /// `listen_ip` (default every IPv4 interface).
    pub listen_ip: std::net::IpAddr,
    /// `port` (default 9090, Prometheus' own convention for exporters).
    pub port: u16,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            port: 8080,
            listen_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            timeout: Duration::from_secs(2),
            read_header_timeout: Duration::from_secs(10),
            max_header_bytes: 1024 * 1024,
            debug_endpoint: false,
            max_body_bytes: 4 * 1024 * 1024,
            prometheus: Vec::new(),
        }
    }
}

/// A setting that loads, but does not do quite what it says: what was asked, and what
/// redplug does instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    /// JSON path of the key, such as `extra_config.redis.connection_pools[0].tls.min_version`.
    pub path: String,
    /// What was asked, why it cannot be done, and what is done instead.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// One entry of `endpoints[]`: what redplug reads of it.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointConfig {
    /// `endpoint`: the path pattern served, with `{param}` placeholders.
    pub endpoint: String,
    /// `method` (default `GET`).
    pub method: http::Method,
    /// `timeout`, when the endpoint sets one.
    pub timeout: Option<Duration>,
    /// `output_encoding`, when the endpoint sets one.
    pub output_encoding: Option<String>,
    /// `backend[]`, in order.
    pub backends: Vec<BackendConfig>,
    /// `extra_config["plugin/redplug"]`: the plugins wrapping the whole endpoint.
    pub plugins: Option<ScopeConfig>,
    /// `input_headers`: the client headers passed to the backend (`["*"]` for all; none by
    /// default, as in KrakenD).
    pub input_headers: Vec<String>,
    /// `input_query_strings`: the query parameters passed to the backend (`["*"]` for all;
    /// none by default).
    pub input_query_strings: Vec<String>,
    /// `extra_config["plugin/redplug"].max_body_bytes`: this endpoint's body limit, when it
    /// sets one.
    pub max_body_bytes: Option<usize>,
    /// Where the endpoint is in the file, such as `endpoints[3]`.
    pub path: String,
}

/// One entry of an endpoint's `backend[]`: what redplug reads of it.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendConfig {
    /// `host`: base URLs to call, in turn; the top level's `host` when the backend has none.
    pub hosts: Vec<String>,
    /// `url_pattern`: the path called, with the endpoint's `{param}`s.
    pub url_pattern: String,
    /// `method`, when it differs from the endpoint's.
    pub method: Option<http::Method>,
    /// `encoding`, when the backend sets one.
    pub encoding: Option<String>,
    /// `extra_config["plugin/redplug"]`: the plugins wrapping this backend's call.
    pub plugins: Option<ScopeConfig>,
    /// Where the backend is in the file, such as `endpoints[3].backend[0]`.
    pub path: String,
}

/// `extra_config["plugin/redplug"]` of an endpoint or backend: `{"name": [...], "<plugin>":
/// {...}}`, KrakenD's modifier shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ScopeConfig {
    /// Where the scope is in the file.
    pub path: String,
    /// `name`: the plugins to run, in order, each with the settings this scope gives it.
    pub plugins: Vec<ScopedPlugin>,
    /// `max_body_bytes`, on an endpoint: its limit on the bodies plugins read.
    pub max_body_bytes: Option<usize>,
}

/// One plugin listed in a scope's `name`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScopedPlugin {
    /// The plugin's registered name.
    pub name: String,
    /// Where it is listed, such as `endpoints[0].extra_config["plugin/redplug"].name[1]`.
    pub name_path: String,
    /// Its settings in this scope and where they are, if the scope gives any.
    pub settings: Option<(serde_json::Value, String)>,
}

/// `extra_config.redis`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RedisConfig {
    /// `connection_pools[]`, in file order.
    pub connection_pools: Vec<PoolConfig>,
    /// `clusters[]`, in file order.
    pub clusters: Vec<ClusterConfig>,
}

impl RedisConfig {
    /// The names of every configured pool, in file order.
    pub fn pool_names(&self) -> Vec<&str> {
        self.connection_pools
            .iter()
            .map(|p| p.name.as_str())
            .collect()
    }

    /// The names of every configured cluster, in file order.
    pub fn cluster_names(&self) -> Vec<&str> {
        self.clusters.iter().map(|c| c.name.as_str()).collect()
    }
}

/// One entry of `connection_pools[]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    /// `name`: unique across pools and clusters.
    pub name: String,
    /// Where the pool's server is: `address`, or the master that `sentinel` names.
    pub server: PoolServer,
    /// `db` (default 0).
    pub db: i64,
    /// Everything a pool shares with a cluster.
    pub options: ConnectionOptions,
}

/// Where a pool's server is: exactly one of a pool's `address` and `sentinel`.
#[derive(Clone, Debug, PartialEq)]
pub enum PoolServer {
    /// `address`: one fixed server.
    Address(Address),
    /// `sentinel`: whichever server the sentinels name as the master, followed across
    /// failovers.
    Sentinel(SentinelConfig),
}

impl PoolServer {
    /// The fixed address, for a pool that has one.
    pub fn address(&self) -> Option<&Address> {
        match self {
            PoolServer::Address(address) => Some(address),
            PoolServer::Sentinel(_) => None,
        }
    }
}

impl fmt::Display for PoolServer {
    /// `host:port`, or `master `name` via sentinels host:port, ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolServer::Address(address) => address.fmt(f),
            PoolServer::Sentinel(sentinel) => {
                write!(f, "master `{}` via sentinels ", sentinel.master_name)?;
                for (i, address) in sentinel.addresses.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    address.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

/// A pool's `sentinel` object: the Redis Sentinel group that names the pool's master.
#[derive(Clone, Debug, PartialEq)]
pub struct SentinelConfig {
    /// `master_name`: the name the sentinels monitor the master under.
    pub master_name: String,
    /// `addresses`: the sentinels, asked in turn; at least one.
    pub addresses: Vec<Address>,
    /// `user_name` for the sentinels (the pool's own one is for the data nodes).
    pub user_name: Option<Secret>,
    /// `password` for the sentinels (the pool's own one is for the data nodes).
    pub password: Option<Secret>,
    /// `tls` for the sentinels; `None` uses the pool's own `tls`.
    pub tls: Option<TlsConfig>,
}

/// One entry of `clusters[]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    /// `name`: unique across pools and clusters.
    pub name: String,
    /// `addresses`: the seed nodes; at least one.
    pub addresses: Vec<Address>,
    /// `max_redirects` (default 3); `None` when -1 disables following redirects.
    pub max_redirects: Option<u32>,
    /// Everything a cluster shares with a pool.
    pub options: ConnectionOptions,
}

/// Options shared by pools and clusters, with KrakenD's defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionOptions {
    /// `user_name`, for ACL `AUTH user password`.
    pub user_name: Option<Secret>,
    /// `password`.
    pub password: Option<Secret>,
    /// `client_name`, sent with `CLIENT SETNAME` on every new connection.
    pub client_name: Option<String>,
    /// `pool_size`; 0 in the file means the default, 10.
    pub pool_size: usize,
    /// `pool_timeout` (default 4s): how long a checkout waits when every connection is busy.
    pub pool_timeout: Duration,
    /// `dial_timeout` (default 5s): connect, TLS handshake and connection setup.
    pub dial_timeout: Duration,
    /// `conn_max_idle_time` (default 30m); `None` when `<= 0` disables it.
    pub conn_max_idle_time: Option<Duration>,
    /// `conn_max_life_time`; `None` (the default) means connections never expire by age.
    pub conn_max_life_time: Option<Duration>,
    /// `max_active_conns`; `None` for 0, the default: no limit beyond `pool_size`.
    pub max_active_conns: Option<usize>,
    /// `min_idle_conns` (default 0).
    pub min_idle_conns: usize,
    /// `max_idle_conns`; `None` for 0, the default: idle connections are not trimmed.
    pub max_idle_conns: Option<usize>,
    /// `max_retries`, `min_retry_backoff`, `max_retry_backoff`.
    pub retry: RetryConfig,
    /// `tls`; `None` for plain TCP.
    pub tls: Option<TlsConfig>,
    /// `opentelemetry`.
    pub opentelemetry: TelemetryConfig,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            user_name: None,
            password: None,
            client_name: None,
            pool_size: 10,
            pool_timeout: Duration::from_secs(4),
            dial_timeout: Duration::from_secs(5),
            conn_max_idle_time: Some(Duration::from_secs(30 * 60)),
            conn_max_life_time: None,
            max_active_conns: None,
            min_idle_conns: 0,
            max_idle_conns: None,
            retry: RetryConfig::default(),
            tls: None,
            opentelemetry: TelemetryConfig::default(),
        }
    }
}

impl ConnectionOptions {
    /// The most connections the pool may hold open at once: `pool_size`, lowered by
    /// `max_active_conns` when that is set and smaller.
    pub fn max_connections(&self) -> usize {
        match self.max_active_conns {
            Some(max) => max.min(self.pool_size),
            None => self.pool_size,
        }
    }
}

/// go-redis' retry policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryConfig {
    /// Retries after the first attempt: `max_retries` 3 (the default) allows 4 attempts; -1 in
    /// the file gives 0.
    pub max_retries: u32,
    /// `min_retry_backoff` (default 8ms).
    pub min_backoff: Duration,
    /// `max_retry_backoff` (default 512ms).
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            min_backoff: Duration::from_millis(8),
            max_backoff: Duration::from_millis(512),
        }
    }
}

/// KrakenD's client TLS object. Files named in it are read when the config loads.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsConfig {
    /// `allow_insecure_connections`: skip certificate and host name verification.
    pub allow_insecure_connections: bool,
    /// `ca_certs`: extra trusted CA certificates, read from PEM files.
    pub ca_certs: Vec<PemFile>,
    /// `disable_system_ca_pool`: trust only `ca_certs`, not the system's roots.
    pub disable_system_ca_pool: bool,
    /// `client_certs`: certificates for servers that ask for one. For each request the first
    /// entry the server can accept is sent (its key signs with a scheme the server offers,
    /// and its chain comes from a CA the server names, when it names any), as Go does.
    pub client_certs: Vec<ClientCert>,
    /// The lowest version offered: `min_version` (default TLS 1.2), raised to TLS 1.2 when it
    /// asks for an older one, and to TLS 1.3 when `cipher_suites` leaves no TLS 1.2 suite.
    pub min_version: TlsVersion,
    /// The highest version offered: `max_version` (default TLS 1.3), raised to TLS 1.2 when it
    /// asks for an older one.
    pub max_version: TlsVersion,
    /// `cipher_suites`: the TLS 1.2 cipher suites to offer, as IANA numbers (Go's
    /// `tls.TLS_*` constants), keeping only those rustls implements; `None` offers all of
    /// them. As in Go, the list does not touch TLS 1.3, whose suites are all offered, and
    /// its order does not matter: suites are offered in rustls' order of preference.
    pub cipher_suites: Option<Vec<u16>>,
    /// `curve_preferences`: the key exchange groups to offer, most preferred first, as IANA
    /// numbers (Go's `tls.CurveID`), keeping only those rustls implements; `None` offers
    /// rustls' default groups in its default order.
    pub curve_preferences: Option<Vec<u16>>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            allow_insecure_connections: false,
            ca_certs: Vec::new(),
            disable_system_ca_pool: false,
            client_certs: Vec::new(),
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            cipher_suites: None,
            curve_preferences: None,
        }
    }
}

/// A PEM file named in the config, read at load time.
#[derive(Clone, PartialEq, Eq)]
pub struct PemFile {
    /// The path as written in the config.
    pub path: PathBuf,
    /// The file's bytes.
    pub contents: Vec<u8>,
}

impl fmt::Debug for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemFile")
            .field("path", &self.path)
            .field("bytes", &self.contents.len())
            .finish()
    }
}

/// One entry of `tls.client_certs[]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientCert {
    /// `certificate`: the certificate chain, PEM.
    pub certificate: PemFile,
    /// `private_key`: the key, PEM. Its bytes never reach `Debug`.
    pub private_key: PemFile,
}

/// A TLS version redplug can speak: the config's `TLS12` or `TLS13` (also spelt `TLS1.2`,
/// `TLS1.3`). Older versions in the config load as TLS 1.2, with a warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// `opentelemetry`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `disable_metrics`.
    pub disable_metrics: bool,
    /// `disable_traces`.
    pub disable_traces: bool,
    /// `traces_static_attributes`: `[{"key": "...", "value": "..."}]`, added to every span.
    pub traces_static_attributes: Vec<(String, String)>,
}

/// A `host:port` address. IPv6 hosts are written `[::1]:6379`; `host` holds them without the
/// brackets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A credential from the config. `Debug` and `Display` print `***`, so it cannot leak into
/// logs or error messages by accident; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, for the one place that sends it to Redis.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
