//! The gateway's own top-level keys that `redplug serve` runs by: where it listens, how long
//! an endpoint may take, and its limits on what clients send. Every key is KrakenD's, with
//! KrakenD's default, except where a default of ours bounds a client KrakenD leaves unbounded
//! (`read_header_timeout`).

use std::net::IpAddr;
use std::time::Duration;

use super::json::Budget;
use super::model::{GatewayConfig, PrometheusExporter};
use super::reader::{IntRange, Keys, Node, Problems};
use super::source::Sections;

/// The largest body a plugin may be given to read: 256 MiB.
pub const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// `max_body_bytes`: a body size a plugin may read, 0 to 256 MiB.
pub(super) const BODY_BYTES: IntRange = IntRange {
    min: 0,
    max: MAX_BODY_BYTES as i64,
    below: "is negative; write a size in bytes, such as 4194304 for 4 MiB",
    above: " bytes (256 MiB): a plugin that must read bodies larger than that should not \
            have them buffered",
};

const PORT: IntRange = IntRange {
    min: 0,
    max: u16::MAX as i64,
    below: "is negative; write a TCP port, such as 8080 (0 picks a free one)",
    above: ", the highest TCP port",
};

const HEADER_BYTES: IntRange = IntRange {
    min: 0,
    max: 64 * 1024 * 1024,
    below: "is negative; write a size in bytes (0 keeps the default of 1 MiB)",
    above: " bytes",
};

/// Reads the top-level keys of `sections` into the gateway's settings; a key that is absent
/// or wrong keeps its default (the problem is reported).
pub(super) fn read(sections: &Sections<'_>, p: &mut Problems) -> GatewayConfig {
    let mut gateway = GatewayConfig::default();
    let mut node = |key: &str, read: &mut dyn FnMut(&Node<'_>, &mut Problems)| {
        let Some(raw) = sections.gateway(key) else {
            return;
        };
        let Some(tree) = super::tree(raw, key, sections.text, &mut Budget::default(), p) else {
            return;
        };
        read(&Node::new(&tree, key), p);
    };
    node("port", &mut |node, p| {
        if let Some(port) = node.integer(p, PORT).and_then(|n| u16::try_from(n).ok()) {
            gateway.port = port;
        }
    });
    node("listen_ip", &mut |node, p| {
        let Some(text) = node.string(p) else {
            return;
        };
        match text.parse::<IpAddr>() {
            Ok(ip) => gateway.listen_ip = ip,
            Err(_) if text.is_empty() => {}
            Err(_) => p.add(node.invalid(
                "is not an IP address; write one such as \"127.0.0.1\" or \"::1\", or leave \
                 the key out to listen on every interface",
            )),
        }
    });
    node("timeout", &mut |node, p| {
        if let Some(timeout) = positive(node, p) {
            gateway.timeout = timeout;
        }
    });
    node("read_header_timeout", &mut |node, p| {
        if let Some(timeout) = positive(node, p) {
            gateway.read_header_timeout = timeout;
        }
    });
    node("debug_endpoint", &mut |node, p| {
        if let Some(on) = node.boolean(p) {
            gateway.debug_endpoint = on;
        }
    });
    node("max_header_bytes", &mut |node, p| match node
        .integer(p, HEADER_BYTES)
        .and_then(|n| usize::try_from(n).ok())
    {
        Some(0) | None => {}
        Some(bytes) => gateway.max_header_bytes = bytes,
    });
    gateway
}

/// A positive duration.
pub(super) fn positive(node: &Node<'_>, p: &mut Problems) -> Option<Duration> {
    let duration = node.duration(p)?;
    match duration.to_std() {
        Some(duration) if !duration.is_zero() => Some(duration),
        _ => {
            p.add(node.invalid("is not a timeout; write a positive duration, such as \"2s\""));
            None
        }
    }
}

/// `extra_config["telemetry/opentelemetry"]`: KrakenD's telemetry settings, of which redplug
/// reads `exporters.prometheus[]` (`name`, `port`, `listen_ip`). The rest is KrakenD's and is
/// not checked here.
pub(super) fn read_prometheus(node: &Node<'_>, p: &mut Problems) -> Vec<PrometheusExporter> {
    let Some(object) = node.object(p, &Keys::ANY) else {
        return Vec::new();
    };
    let Some(exporters) = object.get("exporters") else {
        return Vec::new();
    };
    let Some(exporters) = exporters.object(p, &Keys::ANY) else {
        return Vec::new();
    };
    let Some(prometheus) = exporters.get("prometheus") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (index, entry) in prometheus.array(p).unwrap_or_default().iter().enumerate() {
        let Some(entry) = entry.object(p, &Keys::ANY) else {
            continue;
        };
        let name = match entry.get("name") {
            Some(name) => name.string(p).unwrap_or_default().to_owned(),
            None => format!("prometheus[{index}]"),
        };
        let port = match entry.get("port") {
            Some(port) => match port.integer(p, PORT).and_then(|n| u16::try_from(n).ok()) {
                Some(port) => port,
                None => continue,
            },
            None => 9090,
        };
        let listen_ip = match entry.get("listen_ip") {
            Some(ip) => match ip.string(p).map(str::parse::<IpAddr>) {
                Some(Ok(ip)) => ip,
                Some(Err(_)) => {
                    p.add(ip.invalid("is not an IP address; write one such as \"127.0.0.1\""));
                    continue;
                }
                None => continue,
            },
            None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        };
        found.push(PrometheusExporter {
            name,
            listen_ip,
            port,
        });
    }
    found
}
