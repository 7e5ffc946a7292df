//! The options a pool and a cluster share: credentials, pool sizing, timeouts, retries, TLS and
//! OpenTelemetry, with KrakenD's defaults and the checks between related keys.
//!
//! Where go-redis maps a zero to its default (`pool_size`, `max_retries`, the timeouts and
//! backoffs), so do we: a KrakenD config that writes `0` behaves the same here.

use std::path::Path;
use std::time::Duration;

use super::model::{ConnectionOptions, RetryConfig, TelemetryConfig};
use super::reader::{IntRange, Keys, Node, Object, Problems};
use super::tls;

/// The keys every pool and cluster accepts, in the order the KrakenD docs list them.
pub(super) const SHARED_KEYS: [&str; 16] = [
    "client_name",
    "conn_max_idle_time",
    "conn_max_life_time",
    "dial_timeout",
    "max_active_conns",
    "max_idle_conns",
    "max_retries",
    "max_retry_backoff",
    "min_idle_conns",
    "min_retry_backoff",
    "opentelemetry",
    "password",
    "pool_size",
    "pool_timeout",
    "tls",
    "user_name",
];

const DEFAULT_POOL_SIZE: usize = 10;
const DEFAULT_MAX_RETRIES: u32 = 3;

/// `max_retries`: -1 is go-redis' way to say "never retry".
const RETRIES: IntRange = IntRange {
    min: -1,
    max: i32::MAX as i64,
    below: "is not a retry count; write -1 to never retry, or a count of 0 or more (0 means \
            the default, 3)",
    above: "",
};

/// A key that was absent, present but invalid (already reported), or read.
pub(super) enum Field<'a, T> {
    Absent,
    Invalid,
    Set(Node<'a>, T),
}

impl<'a, T: Copy> Field<'a, T> {
    /// Reads `key` with `read`, which reports its own errors.
    pub(super) fn read(
        obj: &Object<'a>,
        key: &str,
        p: &mut Problems,
        read: impl FnOnce(&Node<'a>, &mut Problems) -> Option<T>,
    ) -> Self {
        match obj.get(key) {
            None => Field::Absent,
            Some(node) => match read(&node, p) {
                Some(value) => Field::Set(node, value),
                None => Field::Invalid,
            },
        }
    }

    /// The value read, or `default` when the key is absent or invalid.
    pub(super) fn or(&self, default: T) -> T {
        match self {
            Field::Set(_, value) => *value,
            _ => default,
        }
    }

    /// The value to compare with other keys: `None` when it was invalid, so a mistake is
    /// reported once rather than again by every check that involves it.
    pub(super) fn checked(&self, default: T) -> Option<T> {
        match self {
            Field::Invalid => None,
            _ => Some(self.or(default)),
        }
    }

    /// ", the default" when the key was not written, for messages that quote the value.
    fn note(&self) -> &'static str {
        match self {
            Field::Set(..) => "",
            _ => ", the default",
        }
    }
}

/// Reads the shared options of the pool or cluster `obj`.
pub(super) fn read_options(obj: &Object<'_>, p: &mut Problems, base: &Path) -> ConnectionOptions {
    let mut o = ConnectionOptions::default();
    if let Some(node) = obj.get("user_name") {
        o.user_name = node.secret(p);
    }
    if let Some(node) = obj.get("password") {
        o.password = node.secret(p);
    }
    if let Some(node) = obj.get("client_name") {
        o.client_name = read_client_name(&node, p);
    }

    let pool_size = Field::read(obj, "pool_size", p, |n, p| {
        n.integer(p, IntRange::CONNECTIONS).map(|v| {
            if v == 0 {
                DEFAULT_POOL_SIZE
            } else {
                v as usize
            }
        })
    });
    o.pool_size = pool_size.or(DEFAULT_POOL_SIZE);
    let defaults = ConnectionOptions::default();
    o.pool_timeout =
        read_timeout(obj, "pool_timeout", p, defaults.pool_timeout).or(defaults.pool_timeout);
    o.dial_timeout =
        read_timeout(obj, "dial_timeout", p, defaults.dial_timeout).or(defaults.dial_timeout);
    o.conn_max_idle_time =
        Field::read(obj, "conn_max_idle_time", p, read_limit).or(defaults.conn_max_idle_time);
    o.conn_max_life_time = Field::read(obj, "conn_max_life_time", p, read_limit).or(None);

    let optional_count = |n: &Node<'_>, p: &mut Problems| {
        n.integer(p, IntRange::CONNECTIONS)
            .map(|v| (v > 0).then_some(v as usize))
    };
    let max_active = Field::read(obj, "max_active_conns", p, optional_count);
    let min_idle = Field::read(obj, "min_idle_conns", p, |n, p| {
        n.integer(p, IntRange::CONNECTIONS).map(|v| v as usize)
    });
    let max_idle = Field::read(obj, "max_idle_conns", p, optional_count);
    o.max_active_conns = max_active.or(None);
    o.min_idle_conns = min_idle.or(0);
    o.max_idle_conns = max_idle.or(None);

    let max_retries = Field::read(obj, "max_retries", p, |n, p| {
        n.integer(p, RETRIES).map(|v| match v {
            -1 => 0,
            0 => DEFAULT_MAX_RETRIES,
            v => v as u32,
        })
    });
    let retry = RetryConfig::default();
    let min_backoff = read_timeout(obj, "min_retry_backoff", p, retry.min_backoff);
    let max_backoff = read_timeout(obj, "max_retry_backoff", p, retry.max_backoff);
    o.retry = RetryConfig {
        max_retries: max_retries.or(retry.max_retries),
        min_backoff: min_backoff.or(retry.min_backoff),
        max_backoff: max_backoff.or(retry.max_backoff),
    };

    if let Some(node) = obj.get("tls") {
        o.tls = tls::read_tls(&node, p, base);
    }
    if let Some(node) = obj.get("opentelemetry") {
        o.opentelemetry = read_telemetry(&node, p);
    }

    check_idle_counts(p, &pool_size, &min_idle, &max_idle, &max_active);
    check_backoffs(p, &min_backoff, &max_backoff, &retry);
    o
}

/// `CLIENT SETNAME` refuses spaces and control characters, and go-redis skips it for `""`.
fn read_client_name(node: &Node<'_>, p: &mut Problems) -> Option<String> {
    let name = node.string(p)?;
    if name.chars().any(|c| !('!'..='~').contains(&c)) {
        p.add(node.invalid(
            "cannot be a Redis client name: CLIENT SETNAME accepts only printable ASCII \
             without spaces; write something like \"krakend_pool\"",
        ));
        return None;
    }
    (!name.is_empty()).then(|| name.to_owned())
}

/// A timeout or backoff: negative is an error, zero means the default (as in go-redis).
fn read_timeout<'a>(
    obj: &Object<'a>,
    key: &str,
    p: &mut Problems,
    default: Duration,
) -> Field<'a, Duration> {
    Field::read(obj, key, p, |n, p| {
        let d = n.duration(p)?;
        match d.to_std() {
            Some(Duration::ZERO) => Some(default),
            Some(d) => Some(d),
            None => {
                p.add(n.invalid(format!(
                    "is negative; write a positive duration such as \"{}\" (the default)",
                    redplug::duration::GoDuration::from_std(default).unwrap_or_default()
                )));
                None
            }
        }
    })
}

/// An idle time or lifetime limit: zero or negative turns the limit off.
fn read_limit(node: &Node<'_>, p: &mut Problems) -> Option<Option<Duration>> {
    let d = node.duration(p)?;
    Some(d.to_std().filter(|d| !d.is_zero()))
}

fn check_idle_counts(
    p: &mut Problems,
    pool_size: &Field<'_, usize>,
    min_idle: &Field<'_, usize>,
    max_idle: &Field<'_, Option<usize>>,
    max_active: &Field<'_, Option<usize>>,
) {
    let Field::Set(min_node, min) = min_idle else {
        return;
    };
    if let Some(size) = pool_size.checked(DEFAULT_POOL_SIZE)
        && *min > size
    {
        p.add(min_node.invalid(format!(
            "is more than pool_size ({size}{}): a pool never holds more than pool_size \
             connections; lower min_idle_conns or raise pool_size",
            pool_size.note()
        )));
    }
    if let Field::Set(node, Some(max)) = max_idle
        && max < min
    {
        p.add(node.invalid(format!(
            "is less than min_idle_conns ({min}): the pool would close idle connections it must \
             keep; raise max_idle_conns to at least {min}, or set 0 for no limit"
        )));
    }
    if let Field::Set(node, Some(max)) = max_active
        && max < min
    {
        p.add(node.invalid(format!(
            "is less than min_idle_conns ({min}): the pool could never open the idle \
             connections it must keep; raise max_active_conns to at least {min}, or set 0 for \
             no limit"
        )));
    }
}

fn check_backoffs(
    p: &mut Problems,
    min: &Field<'_, Duration>,
    max: &Field<'_, Duration>,
    defaults: &RetryConfig,
) {
    let (Some(lo), Some(hi)) = (
        min.checked(defaults.min_backoff),
        max.checked(defaults.max_backoff),
    ) else {
        return;
    };
    if lo <= hi {
        return;
    }
    let show = |d: Duration| redplug::duration::GoDuration::from_std(d).unwrap_or_default();
    let how = "every retry waits between the two, so lower min_retry_backoff or raise \
               max_retry_backoff";
    if let Field::Set(node, _) = min {
        p.add(node.invalid(format!(
            "is longer than max_retry_backoff ({}{}); {how}",
            show(hi),
            max.note()
        )));
    } else if let Field::Set(node, _) = max {
        p.add(node.invalid(format!(
            "is shorter than min_retry_backoff ({}{}); {how}",
            show(lo),
            min.note()
        )));
    }
}

const TELEMETRY_KEYS: Keys = Keys {
    known: &[
        "disable_metrics",
        "disable_traces",
        "traces_static_attributes",
    ],
    misplaced: &[],
    open: false,
    comments: false,
};

const ATTRIBUTE_KEYS: Keys = Keys {
    known: &["key", "value"],
    misplaced: &[],
    open: false,
    comments: false,
};

/// `opentelemetry`: two switches and the static attributes added to every span.
fn read_telemetry(node: &Node<'_>, p: &mut Problems) -> TelemetryConfig {
    let mut telemetry = TelemetryConfig::default();
    let Some(obj) = node.object(p, &TELEMETRY_KEYS) else {
        return telemetry;
    };
    if let Some(n) = obj.get("disable_metrics") {
        telemetry.disable_metrics = n.boolean(p).unwrap_or_default();
    }
    if let Some(n) = obj.get("disable_traces") {
        telemetry.disable_traces = n.boolean(p).unwrap_or_default();
    }
    let Some(attributes) = obj.get("traces_static_attributes") else {
        return telemetry;
    };
    for item in attributes.array(p).unwrap_or_default() {
        let Some(attr) = item.object(p, &ATTRIBUTE_KEYS) else {
            continue;
        };
        let how = "each attribute is {\"key\": \"...\", \"value\": \"...\"}";
        let key = attr.required("key", p, how).and_then(|n| {
            let key = n.string(p)?;
            if key.trim().is_empty() {
                p.add(n.invalid("is empty; an attribute needs a name, such as \"deployment\""));
                return None;
            }
            Some(key)
        });
        let value = attr.required("value", p, how).and_then(|n| n.string(p));
        if let (Some(key), Some(value)) = (key, value) {
            telemetry
                .traces_static_attributes
                .push((key.to_owned(), value.to_owned()));
        }
    }
    telemetry
}
