//! `endpoints[]`: what redplug reads of the gateway's endpoints. Each endpoint's path, method
//! and timeout, its backends' hosts and URL patterns, and the plugin chain listed for the
//! endpoint and for each backend in `extra_config["plugin/redplug"]` (KrakenD's modifier shape:
//! `{"name": ["rate_limit", "counter"], "rate_limit": {"limit": 2}}`).
//!
//! Endpoints may be many and hold much that is not ours, so they are read the way the whole
//! file is: serde_json walks each one and keeps only the keys read here, and only those are
//! turned into trees, one small value at a time.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use http::Method;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::json::{self, Budget, Json};
use super::model::{BackendConfig, EndpointConfig, ScopeConfig, ScopedPlugin};
use super::reader::{self, Keys, Node, Problems, is_comment_key};
use super::source::{Raw, offset_in};
use super::{ConfigError, MAX_BODY_BYTES_KEY, PLUGIN_NAMESPACE};

/// The most endpoints a config may list: each one costs the runtime a route and its chains.
pub const MAX_ENDPOINTS: usize = 10_000;

/// The most backends one endpoint may list.
pub const MAX_BACKENDS: usize = 100;

/// The methods an endpoint or backend may use, as KrakenD accepts them.
const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
];

/// Everything reading endpoints needs: the whole file (for positions), the value budget of
/// plugin settings, and where problems go.
pub(super) struct Reading<'r, 'a> {
    pub text: &'a str,
    pub budget: &'r mut Budget,
    pub problems: &'r mut Problems,
}

/// Reads `endpoints`; `hosts` is the top-level `host` list, which backends without their own
/// inherit.
pub(super) fn read_endpoints<'a>(
    raw: Raw<'a>,
    hosts: &[String],
    reading: &mut Reading<'_, 'a>,
) -> Vec<EndpointConfig> {
    let Some(items) = items(raw, "endpoints", reading) else {
        return Vec::new();
    };
    if items.len() > MAX_ENDPOINTS {
        reading.problems.add(ConfigError {
            path: "endpoints".to_owned(),
            message: format!(
                "lists {} endpoints, more than the {MAX_ENDPOINTS} redplug runs; split the \
                 gateway",
                items.len()
            ),
            value: None,
        });
        return Vec::new();
    }
    items
        .into_iter()
        .enumerate()
        .filter_map(|(index, item)| {
            read_endpoint(item, &format!("endpoints[{index}]"), hosts, reading)
        })
        .collect()
}

fn read_endpoint<'a>(
    raw: Raw<'a>,
    path: &str,
    hosts: &[String],
    reading: &mut Reading<'_, 'a>,
) -> Option<EndpointConfig> {
    let keys = [
        "endpoint",
        "method",
        "timeout",
        "output_encoding",
        "input_headers",
        "input_query_strings",
        "backend",
        "extra_config",
    ];
    let fields = pick(raw, path, &keys, reading)?;
    let endpoint = match fields.get("endpoint") {
        Some(raw) => scalar(*raw, &format!("{path}.endpoint"), reading, |node, p| {
            let text = node.string(p)?;
            if !text.starts_with('/') {
                p.add(node.invalid(
                    "is not a path; an endpoint starts with `/`, such as \"/v1/users/{id}\"",
                ));
                return None;
            }
            Some(text.to_owned())
        }),
        None => {
            reading.problems.add(ConfigError {
                path: format!("{path}.endpoint"),
                message: "required key is missing; give the path this endpoint serves, such as \
                          \"endpoint\": \"/v1/users/{id}\""
                    .to_owned(),
                value: None,
            });
            None
        }
    };
    let method = method(
        fields.get("method").copied(),
        &format!("{path}.method"),
        reading,
    );
    let timeout = fields
        .get("timeout")
        .and_then(|raw| scalar(*raw, &format!("{path}.timeout"), reading, read_timeout));
    let output_encoding = fields.get("output_encoding").and_then(|raw| {
        scalar(
            *raw,
            &format!("{path}.output_encoding"),
            reading,
            |node, p| node.string(p).map(str::to_owned),
        )
    });
    let input_headers = fields
        .get("input_headers")
        .and_then(|raw| scalar(*raw, &format!("{path}.input_headers"), reading, strings));
    let input_query_strings = fields.get("input_query_strings").and_then(|raw| {
        scalar(
            *raw,
            &format!("{path}.input_query_strings"),
            reading,
            strings,
        )
    });
    let plugins = fields.get("extra_config").and_then(|raw| {
        scope(
            *raw,
            &format!("{path}.extra_config"),
            Place::Endpoint,
            reading,
        )
    });
    let backends = match fields.get("backend") {
        Some(raw) => {
            let list_path = format!("{path}.backend");
            let items = items(*raw, &list_path, reading).unwrap_or_default();
            if items.len() > MAX_BACKENDS {
                reading.problems.add(ConfigError {
                    path: list_path.clone(),
                    message: format!(
                        "lists {} backends, more than the {MAX_BACKENDS} one endpoint may have",
                        items.len()
                    ),
                    value: None,
                });
                Vec::new()
            } else {
                items
                    .into_iter()
                    .enumerate()
                    .filter_map(|(index, item)| {
                        read_backend(item, &format!("{list_path}[{index}]"), hosts, reading)
                    })
                    .collect()
            }
        }
        None => Vec::new(),
    };
    Some(EndpointConfig {
        endpoint: endpoint?,
        method: method?,
        timeout: timeout.flatten(),
        output_encoding,
        backends,
        max_body_bytes: plugins.as_ref().and_then(|scope| scope.max_body_bytes),
        plugins,
        input_headers: input_headers.unwrap_or_default(),
        input_query_strings: input_query_strings.unwrap_or_default(),
        path: path.to_owned(),
    })
}

fn read_backend<'a>(
    raw: Raw<'a>,
    path: &str,
    inherited: &[String],
    reading: &mut Reading<'_, 'a>,
) -> Option<BackendConfig> {
    let keys = ["host", "url_pattern", "method", "encoding", "extra_config"];
    let fields = pick(raw, path, &keys, reading)?;
    let hosts = match fields.get("host") {
        Some(raw) => scalar(*raw, &format!("{path}.host"), reading, read_hosts),
        None => Some(inherited.to_vec()),
    };
    let hosts = hosts.filter(|hosts| {
        let empty = hosts.is_empty();
        if empty {
            reading.problems.add(ConfigError {
                path: format!("{path}.host"),
                message: "no host to call; list the backend's base URLs here, such as \
                          \"host\": [\"http://users.internal:8080\"], or at the top level for \
                          every backend that has none"
                    .to_owned(),
                value: fields.get("host").map(|raw| raw.text.to_owned()),
            });
        }
        !empty
    });
    let url_pattern = match fields.get("url_pattern") {
        Some(raw) => scalar(*raw, &format!("{path}.url_pattern"), reading, |node, p| {
            let text = node.string(p)?;
            if !text.starts_with('/') {
                p.add(node.invalid(
                    "is not a path; a url_pattern starts with `/`, such as \"/users/{id}\"",
                ));
                return None;
            }
            Some(text.to_owned())
        }),
        None => {
            reading.problems.add(ConfigError {
                path: format!("{path}.url_pattern"),
                message: "required key is missing; give the path to call on the backend, such \
                          as \"url_pattern\": \"/users/{id}\""
                    .to_owned(),
                value: None,
            });
            None
        }
    };
    let method = match fields.get("method") {
        Some(raw) => method(Some(*raw), &format!("{path}.method"), reading).map(Some),
        None => Some(None),
    };
    let encoding = fields.get("encoding").and_then(|raw| {
        scalar(*raw, &format!("{path}.encoding"), reading, |node, p| {
            node.string(p).map(str::to_owned)
        })
    });
    let plugins = fields.get("extra_config").and_then(|raw| {
        scope(
            *raw,
            &format!("{path}.extra_config"),
            Place::Backend,
            reading,
        )
    });
    Some(BackendConfig {
        hosts: hosts?,
        url_pattern: url_pattern?,
        method: method?,
        encoding,
        plugins,
        path: path.to_owned(),
    })
}

/// `host`: a list of base URLs (`http://10.0.0.1:8080`), as KrakenD writes it; also the top
/// level's default.
pub(super) fn read_hosts(node: &Node<'_>, p: &mut Problems) -> Option<Vec<String>> {
    if node.is_string() {
        let host = node.string(p)?;
        p.add(node.invalid(format!(
            "is a single host, but `host` is a list; write [{}]",
            reader::quoted(host)
        )));
        return None;
    }
    let items = node.array(p)?;
    let hosts: Vec<Option<String>> = items
        .iter()
        .map(|item| item.string(p).map(str::to_owned))
        .collect();
    hosts.into_iter().collect()
}

/// A method: one of [`METHODS`], upper case; `GET` when absent.
fn method<'a>(raw: Option<Raw<'a>>, path: &str, reading: &mut Reading<'_, 'a>) -> Option<Method> {
    let Some(raw) = raw else {
        return Some(Method::GET);
    };
    scalar(raw, path, reading, |node, p| {
        let text = node.string(p)?;
        if let Some(method) = METHODS.iter().find(|method| method.as_str() == text) {
            return Some(method.clone());
        }
        let upper = text.to_ascii_uppercase();
        let hint = if METHODS.iter().any(|method| method.as_str() == upper) {
            format!("write it in capitals: \"{upper}\"")
        } else {
            let all: Vec<&str> = METHODS.iter().map(Method::as_str).collect();
            format!("use one of {}", all.join(", "))
        };
        p.add(node.invalid(format!("is not a method an endpoint can use; {hint}")));
        None
    })
}

/// A timeout: a positive duration.
fn read_timeout(node: &Node<'_>, p: &mut Problems) -> Option<Option<std::time::Duration>> {
    let duration = node.duration(p)?;
    match duration.to_std() {
        Some(timeout) if !timeout.is_zero() => Some(Some(timeout)),
        _ => {
            p.add(node.invalid("is not a timeout; write a positive duration, such as \"2s\""));
            None
        }
    }
}

/// `extra_config` of an endpoint or backend: its `plugin/redplug` entry, the plugins that run
/// there.
fn scope<'a>(
    raw: Raw<'a>,
    path: &str,
    place: Place,
    reading: &mut Reading<'_, 'a>,
) -> Option<ScopeConfig> {
    let fields = pick(raw, path, &[PLUGIN_NAMESPACE], reading)?;
    let raw = *fields.get(PLUGIN_NAMESPACE)?;
    let path = format!("{path}{}", reader::key_segment(PLUGIN_NAMESPACE));
    let tree = parse(raw, &path, reading)?;
    read_scope(&Node::new(&tree, path), place, reading.problems)
}

/// Where a scope is: the body limit is the endpoint's, since one request crosses both.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Endpoint,
    Backend,
}

/// A list of strings, such as `input_headers`.
fn strings(node: &Node<'_>, p: &mut Problems) -> Option<Vec<String>> {
    let items = node.array(p)?;
    let strings: Vec<Option<String>> = items
        .iter()
        .map(|item| item.string(p).map(str::to_owned))
        .collect();
    strings.into_iter().collect()
}

/// `{"name": [...], "<plugin>": {...}}`: the plugins to run, in order, and settings for some of
/// them.
fn read_scope(node: &Node<'_>, place: Place, p: &mut Problems) -> Option<ScopeConfig> {
    let object = node.object(p, &Keys::ANY)?;
    let how = "list the plugins to run here, in order, such as \"name\": [\"rate_limit\", \
               \"counter\"]";
    let mut plugins: Vec<ScopedPlugin> = Vec::new();
    if let Some(names) = object.required("name", p, how) {
        if names.is_string() {
            if let Some(one) = names.string(p) {
                p.add(names.invalid(format!(
                    "is a single name, but `name` is a list; write [{}]",
                    reader::quoted(one)
                )));
            }
        } else {
            let mut first: HashMap<String, String> = HashMap::new();
            for item in names.array(p).unwrap_or_default() {
                let Some(name) = item.string(p) else {
                    continue;
                };
                if name.is_empty() {
                    p.add(item.invalid("is empty; write the name of a plugin"));
                    continue;
                }
                if let Some(earlier) = first.get(name) {
                    p.add(item.invalid(format!(
                        "is listed twice (first at {earlier}); a plugin runs once in a chain, \
                         so remove one"
                    )));
                    continue;
                }
                first.insert(name.to_owned(), item.path().to_owned());
                plugins.push(ScopedPlugin {
                    name: name.to_owned(),
                    name_path: item.path().to_owned(),
                    settings: None,
                });
            }
        }
    }
    let mut max_body_bytes = None;
    for (key, value) in object.entries() {
        if key == "name" || is_comment_key(key) {
            continue;
        }
        if key == MAX_BODY_BYTES_KEY {
            if place == Place::Backend {
                p.add(value.problem(
                    "is set on a backend; one request crosses the endpoint and its backend, so \
                     set the body limit in the endpoint's extra_config",
                ));
            } else {
                max_body_bytes = value
                    .integer(p, super::gateway::BODY_BYTES)
                    .and_then(|bytes| usize::try_from(bytes).ok());
            }
            continue;
        }
        let Some(plugin) = plugins.iter_mut().find(|plugin| plugin.name == key) else {
            p.add(value.problem(format!(
                "gives settings for `{}`, which `name` does not list here; add it to `name` or \
                 remove these settings",
                super::text::shown(key)
            )));
            continue;
        };
        match value.json().to_serde() {
            Ok(settings) => plugin.settings = Some((settings, value.path().to_owned())),
            Err(_) => p.add(
                value.problem("holds a number too large for any number type; write a smaller one"),
            ),
        }
    }
    Some(ScopeConfig {
        path: node.path().to_owned(),
        plugins,
        max_body_bytes,
    })
}

/// Parses one small value and reads it with `read`; `None` after a problem.
fn scalar<'a, T>(
    raw: Raw<'a>,
    path: &str,
    reading: &mut Reading<'_, 'a>,
    read: impl FnOnce(&Node<'_>, &mut Problems) -> Option<T>,
) -> Option<T> {
    // A scalar's tree is dropped right away: it does not count against the budget, which
    // bounds what is kept.
    let mut scratch = Budget::default();
    let tree = match json::parse(raw.text, raw.at, &mut scratch) {
        Ok(tree) => tree,
        Err(refused) => {
            reading
                .problems
                .add(super::refusal(refused, path, reading.text));
            return None;
        }
    };
    read(&Node::new(&tree, path), reading.problems)
}

/// Parses a value that is kept (plugin settings), against the budget.
fn parse<'a>(raw: Raw<'a>, path: &str, reading: &mut Reading<'_, 'a>) -> Option<Json<'a>> {
    super::tree(raw, path, reading.text, reading.budget, reading.problems)
}

/// The keys in `keys` of the object `raw`, as raw values; the rest are skipped unread. A
/// repeated key or a value that is not an object is reported.
fn pick<'a>(
    raw: Raw<'a>,
    path: &str,
    keys: &[&'static str],
    reading: &mut Reading<'_, 'a>,
) -> Option<HashMap<&'static str, Raw<'a>>> {
    if !raw.text.starts_with('{') {
        // Let the reader say what it is instead.
        scalar(raw, path, reading, |node, p| {
            node.object(p, &Keys::ANY).map(drop)
        });
        return None;
    }
    struct Pick<'k, 'a> {
        keys: &'k [&'static str],
        whole: &'a str,
        found: HashMap<&'static str, Raw<'a>>,
        repeated: Vec<(&'static str, usize)>,
    }
    impl<'de> Visitor<'de> for Pick<'_, 'de> {
        type Value = Self;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }

        fn visit_map<M: MapAccess<'de>>(mut self, mut map: M) -> Result<Self, M::Error> {
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                let Some(known) = self.keys.iter().find(|known| **known == key) else {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                };
                let value: &'de RawValue = map.next_value()?;
                let raw = Raw {
                    text: value.get(),
                    at: offset_in(self.whole, value.get()),
                };
                if self.found.insert(known, raw).is_some() {
                    self.repeated.push((known, raw.at));
                }
            }
            Ok(self)
        }
    }
    let pick = Pick {
        keys,
        whole: reading.text,
        found: HashMap::new(),
        repeated: Vec::new(),
    };
    let mut deserializer = serde_json::Deserializer::from_str(raw.text);
    // The text was checked as JSON already; a failure here would be ours.
    let pick = match deserializer.deserialize_map(pick) {
        Ok(pick) => pick,
        Err(error) => {
            reading.problems.add(ConfigError {
                path: path.to_owned(),
                message: format!("cannot be read: {error}"),
                value: None,
            });
            return None;
        }
    };
    for (key, at) in pick.repeated {
        let key_path = format!("{path}{}", reader::key_segment(key));
        reading
            .problems
            .add(super::source::duplicate(&key_path, reading.text, at));
    }
    Some(pick.found)
}

/// The items of the array `raw`, as raw values; a value that is not an array is reported.
fn items<'a>(raw: Raw<'a>, path: &str, reading: &mut Reading<'_, 'a>) -> Option<Vec<Raw<'a>>> {
    if !raw.text.starts_with('[') {
        scalar(raw, path, reading, |node, p| node.array(p).map(drop));
        return None;
    }
    struct Items<'a> {
        whole: &'a str,
        found: Vec<Raw<'a>>,
    }
    impl<'de> Visitor<'de> for Items<'de> {
        type Value = Vec<Raw<'de>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array")
        }

        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
            while let Some(value) = seq.next_element::<&'de RawValue>()? {
                self.found.push(Raw {
                    text: value.get(),
                    at: offset_in(self.whole, value.get()),
                });
            }
            Ok(self.found)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(raw.text);
    let visitor = Items {
        whole: reading.text,
        found: Vec::new(),
    };
    match deserializer.deserialize_seq(visitor) {
        Ok(items) => Some(items),
        Err(error) => {
            reading.problems.add(ConfigError {
                path: path.to_owned(),
                message: format!("cannot be read: {error}"),
                value: None,
            });
            None
        }
    }
}
