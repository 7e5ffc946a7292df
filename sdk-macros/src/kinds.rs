//! Every attribute the derive reads, in one table: how a user writes it, what it asks for, and
//! what generated code calls for it. A new kind of field starts here.

/// A field attribute that names a connection from the gateway's config.
pub(crate) struct ConnectionKind {
    /// The attribute as written, without `#[...]`: `redis_pool`.
    pub attribute: &'static str,
    /// What it names, in messages: `pool`.
    pub noun: &'static str,
    /// Where the config defines such names.
    pub list: &'static str,
    /// A name to show in examples.
    pub example: &'static str,
    /// The `redplug::NeedKind` variant of its needs.
    pub variant: &'static str,
    /// The `BuildContext` method that hands generated code the resolved handle.
    pub method: &'static str,
    /// The `__private` trait a field of this kind must implement.
    pub field_trait: &'static str,
}

/// `#[redis_pool("name")]`.
pub(crate) const POOL: ConnectionKind = ConnectionKind {
    attribute: "redis_pool",
    noun: "pool",
    list: "extra_config.redis.connection_pools[]",
    example: "redis_at_eight",
    variant: "Pool",
    method: "pool",
    field_trait: "PoolField",
};

/// `#[redis_cluster("name")]`.
pub(crate) const CLUSTER: ConnectionKind = ConnectionKind {
    attribute: "redis_cluster",
    noun: "cluster",
    list: "extra_config.redis.clusters[]",
    example: "shared_cluster",
    variant: "Cluster",
    method: "cluster",
    field_trait: "ClusterField",
};

/// Every connection attribute.
pub(crate) const CONNECTIONS: [&ConnectionKind; 2] = [&POOL, &CLUSTER];

/// `#[redis_selectors]`: lookups by name over every connection.
pub(crate) const SELECTORS: &str = "redis_selectors";

/// `#[redis_script("path")]`: a Lua file, read and hashed at compile time.
pub(crate) const SCRIPT: &str = "redis_script";

/// The `__private` trait a `#[redis_script("...")]` field must implement.
pub(crate) const SCRIPT_FIELD_TRAIT: &str = "ScriptField";

/// `#[plugin(...)]`: on the struct `name` and `crate`, on a field `config`.
pub(crate) const PLUGIN: &str = "plugin";

/// Every field attribute as a user writes it, to tell one that landed on the struct.
pub(crate) fn field_attribute(attribute: &str) -> Option<String> {
    if let Some(kind) = CONNECTIONS.iter().find(|kind| kind.attribute == attribute) {
        return Some(format!("#[{}(\"...\")]", kind.attribute));
    }
    match attribute {
        SELECTORS => Some(format!("#[{SELECTORS}]")),
        SCRIPT => Some(format!("#[{SCRIPT}(\"...\")]")),
        _ => None,
    }
}
