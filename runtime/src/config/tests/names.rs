//! The keys that differ between pools and clusters, and the names both share.

use serde_json::json;

use super::*;

#[test]
fn name_and_address_are_required() {
    let errors = problems(json!({"connection_pools": [{}]}));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_problem(
        &errors[0],
        &format!("{POOL0}.name"),
        "required key is missing; give the pool a name",
    );
    assert_problem(
        &errors[1],
        &format!("{POOL0}.address"),
        "\"address\": \"localhost:6379\"",
    );
    assert_eq!(errors[0].value, None);

    let errors = problems(json!({"clusters": [{}]}));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_problem(
        &errors[0],
        &format!("{CLUSTER0}.name"),
        "give the cluster a name",
    );
    assert_problem(
        &errors[1],
        &format!("{CLUSTER0}.addresses"),
        "list the cluster's seed nodes",
    );
}

#[test]
fn names_cannot_be_blank_or_padded() {
    for blank in ["", "   ", "\t"] {
        let error = pool_problem(json!({"name": blank}));
        assert_problem(&error, &format!("{POOL0}.name"), "is blank");
    }
    let error = cluster_problem(json!({"name": " shared "}));
    assert_problem(&error, &format!("{CLUSTER0}.name"), "write \"shared\"");
    assert_problem(
        &pool_problem(json!({"name": 1})),
        &format!("{POOL0}.name"),
        "is a number, but this key takes a string",
    );
}

#[test]
fn a_name_is_used_once_across_pools_and_clusters() {
    let errors = problems(json!({
        "connection_pools": [
            {"name": "shared", "address": "a:1"},
            {"name": "other", "address": "b:1"},
            {"name": "shared", "address": "c:1"}
        ],
        "clusters": [{"name": "other", "addresses": ["d:1"]}]
    }));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_problem(
        &errors[0],
        "extra_config.redis.connection_pools[2].name",
        "is already used at extra_config.redis.connection_pools[0].name; pools and clusters share",
    );
    assert_problem(
        &errors[1],
        "extra_config.redis.clusters[0].name",
        "is already used at extra_config.redis.connection_pools[1].name",
    );
    assert_eq!(errors[1].value.as_deref(), Some("\"other\""));
}

#[test]
fn names_differing_in_case_are_different_names() {
    let config = parse_redis(json!({"connection_pools": [
        {"name": "Cache", "address": "a:1"},
        {"name": "cache", "address": "a:1"}
    ]}))
    .unwrap();
    assert_eq!(config.redis.connection_pools.len(), 2);
}

#[test]
fn addresses_are_host_and_port() {
    assert_eq!(
        pool(json!({"address": "[::1]:7000"}))
            .server
            .address()
            .map(|a| a.host.as_str()),
        Some("::1")
    );
    let cases = [
        (
            "shared.redis.example.com",
            "has no port; write host:port, such as \"shared.redis.example.com:6379\"",
        ),
        ("::1:6379", "put the host in brackets"),
        ("localhost:99999", "not a number from 1 to 65535"),
        (
            "redis://cache:6379/0",
            "is a URL, but this key takes only host:port, such as \"cache:6379\"",
        ),
    ];
    for (address, fragment) in cases {
        let error = pool_problem(json!({ "address": address }));
        assert_problem(&error, &format!("{POOL0}.address"), fragment);
        assert_eq!(error.value, Some(json!(address).to_string()));
    }
    assert_problem(
        &pool_problem(json!({"address": ["a:1"]})),
        &format!("{POOL0}.address"),
        "is an array, but this key takes a string",
    );
}

#[test]
fn cluster_addresses_are_a_non_empty_list() {
    let c = cluster(json!({"addresses": ["10.0.0.1:7000", "[::1]:7001"]}));
    assert_eq!(c.addresses[1].to_string(), "[::1]:7001");
    assert_problem(
        &cluster_problem(json!({"addresses": []})),
        &format!("{CLUSTER0}.addresses"),
        "is empty; list at least one",
    );
    assert_problem(
        &cluster_problem(json!({"addresses": "10.0.0.1:7000"})),
        &format!("{CLUSTER0}.addresses"),
        "write [\"10.0.0.1:7000\"]",
    );
    assert_problem(
        &cluster_problem(json!({"addresses": ["10.0.0.1:7000", "10.0.0.2"]})),
        &format!("{CLUSTER0}.addresses[1]"),
        "has no port",
    );
}

#[test]
fn db_belongs_to_pools_only() {
    let error = cluster_problem(json!({"db": 0}));
    assert_problem(
        &error,
        &format!("{CLUSTER0}.db"),
        "Redis Cluster has only database 0",
    );
    assert_eq!(error.value, None);
}

#[test]
fn max_redirects_belongs_to_clusters_only() {
    let error = pool_problem(json!({"max_redirects": 3}));
    assert_problem(
        &error,
        &format!("{POOL0}.max_redirects"),
        "only a Redis Cluster redirects",
    );
}

#[test]
fn a_pool_does_not_take_addresses_nor_a_cluster_an_address() {
    assert_problem(
        &pool_problem(json!({"addresses": ["a:1"]})),
        &format!("{POOL0}.addresses"),
        "a pool connects to one server",
    );
    let errors = problems(json!({"clusters": [{"name": "c", "address": "a:1"}]}));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_problem(
        &errors[0],
        &format!("{CLUSTER0}.address"),
        "a cluster takes a list of seed nodes",
    );
    assert_problem(
        &errors[1],
        &format!("{CLUSTER0}.addresses"),
        "required key is missing",
    );
}
