//! `host:port` addresses, as go-redis dials them.
//!
//! go-redis hands the string to Go's `net.Dial`, which needs a port and brackets around IPv6
//! hosts. We check that shape up front so a typo is a config error rather than a dial failure
//! at the first request.

use std::net::Ipv6Addr;

use super::model::Address;
use super::reader::quoted;
use super::text::shown;

/// Why an address was rejected.
#[derive(Debug)]
pub(super) struct AddressError {
    /// Continues a sentence that starts with the value.
    pub message: String,
    /// The value as it may be shown: anything that may be a credential (a user name or
    /// password before an `@`, a query string) replaced with `***`.
    pub shown: String,
}

/// Parses `host:port`.
pub(super) fn parse_address(text: &str) -> Result<Address, AddressError> {
    parse(text).map_err(|message| AddressError {
        message,
        shown: quoted(&redacted(text)),
    })
}

/// `text` with whatever may be a credential replaced: everything before the last `@` (after a
/// `scheme://`), and any query string.
pub(super) fn redacted(text: &str) -> String {
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), text),
    };
    let rest = match rest.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => rest.to_owned(),
    };
    let rest = match rest.split_once('?') {
        Some((before, _)) => format!("{before}?***"),
        None => rest,
    };
    format!("{scheme}{rest}")
}

fn parse(text: &str) -> Result<Address, String> {
    if text.trim().is_empty() {
        return Err("is empty; write host:port, such as \"localhost:6379\"".to_owned());
    }
    let trimmed = text.trim();
    if let Some(path) = trimmed.strip_prefix("unix://") {
        let path = if path.is_empty() {
            "/path/to/redis.sock"
        } else {
            path
        };
        return Err(format!(
            "is a Unix socket ({}), but pools connect over TCP only; make the server listen on a \
             TCP port and write host:port, such as \"localhost:6379\"",
            shown(&redacted(path))
        ));
    }
    if let Some((scheme, rest)) = trimmed.split_once("://") {
        let host_port = rest
            .rsplit_once('@')
            .map_or(rest, |(_, hp)| hp)
            .split(['/', '?'])
            .next()
            .unwrap_or_default();
        let example = if host_port.is_empty() {
            "\"localhost:6379\"".to_owned()
        } else {
            quoted(host_port)
        };
        return Err(format!(
            "is a URL, but this key takes only host:port, such as {example}; the other parts \
             of a {}:// URL have keys of their own: `db`, `user_name`, `password` and `tls`",
            shown(scheme)
        ));
    }
    if let Some((_, host)) = trimmed.rsplit_once('@') {
        return Err(format!(
            "has a user name or password before `@`, but this key takes only host:port, such \
             as {}; put credentials under `user_name` and `password`",
            quoted(host)
        ));
    }
    if let Some((before, _)) = trimmed.split_once('?') {
        return Err(format!(
            "has a query string, but this key takes only host:port, such as {}; a password \
             goes under `password`, a database under `db`",
            quoted(before)
        ));
    }
    if trimmed != text {
        return Err(format!(
            "has spaces around it; write it without them: {}",
            quoted(trimmed)
        ));
    }

    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(
                "opens `[` but never closes it; write IPv6 addresses as \"[::1]:6379\"".to_owned(),
            );
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!(
                "has no port after the bracketed IPv6 address; write \"[{host}]:6379\""
            ));
        };
        // A zone (`fe80::1%eth0`) names the interface and is not part of the address.
        let ip = host.split_once('%').map_or(host, |(ip, _)| ip);
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "has `{host}` in brackets, which is not an IPv6 address; brackets are only for \
                 IPv6 hosts, as in \"[::1]:6379\""
            ));
        }
        (host, port)
    } else {
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!(
                "has no port; write host:port, such as \"{text}:6379\" (6379 is Redis' usual \
                 port)"
            ));
        };
        if host.contains(':') {
            return Err(
                "looks like an IPv6 address without brackets; put the host in brackets, as in \
                 \"[::1]:6379\""
                    .to_owned(),
            );
        }
        if host.is_empty() {
            return Err(format!(
                "has no host before the port; write host:port, such as \"localhost{text}\""
            ));
        }
        if let Some(bad) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(format!(
                "has `{bad}` in its host, which a host name or IPv4 address cannot contain; \
                 write host:port, such as \"redis.internal:6379\""
            ));
        }
        (host, port)
    };

    if port.is_empty() {
        return Err(
            "has no port number after the `:`; write host:port, such as \"localhost:6379\""
                .to_owned(),
        );
    }
    // Rust's integer parser takes a leading `+`; a port is digits only.
    let port = match port.parse::<u16>() {
        Ok(n) if n > 0 && port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => {
            return Err(format!(
                "has port `{port}`, which is not a number from 1 to 65535; Redis usually \
                 listens on 6379"
            ));
        }
    };
    Ok(Address {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> (String, u16) {
        let address = parse_address(text).unwrap_or_else(|e| panic!("{text:?}: {}", e.message));
        (address.host, address.port)
    }

    fn err(text: &str) -> String {
        match parse_address(text) {
            Ok(address) => panic!("{text:?} parsed as {address:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn accepts_host_names_ipv4_and_bracketed_ipv6() {
        assert_eq!(ok("localhost:6379"), ("localhost".into(), 6379));
        assert_eq!(ok("192.168.1.45:6379"), ("192.168.1.45".into(), 6379));
        assert_eq!(
            ok("redis-1.cache_a.internal:1"),
            ("redis-1.cache_a.internal".into(), 1)
        );
        assert_eq!(ok("[::1]:6379"), ("::1".into(), 6379));
        assert_eq!(ok("[fe80::1%eth0]:65535"), ("fe80::1%eth0".into(), 65535));
    }

    #[test]
    fn displays_back_as_written() {
        for text in ["localhost:6379", "[::1]:6379", "10.0.0.1:7000"] {
            assert_eq!(parse(text).map(|a| a.to_string()), Ok(text.to_owned()));
        }
    }

    #[test]
    fn rejects_what_net_dial_would_reject_with_a_fix() {
        assert!(err("").contains("is empty"));
        assert!(err(" localhost:6379").contains("\"localhost:6379\""));
        assert!(err("shared.redis.example.com").contains("\"shared.redis.example.com:6379\""));
        assert!(err("::1:6379").contains("\"[::1]:6379\""));
        assert!(err("[::1]").contains("no port after"));
        assert!(err("[::1:6379").contains("never closes"));
        assert!(err("[redis]:6379").contains("not an IPv6 address"));
        assert!(err(":6379").contains("\"localhost:6379\""));
        assert!(err("localhost:").contains("no port number"));
        assert!(err("localhost:0").contains("from 1 to 65535"));
        assert!(err("localhost:65536").contains("from 1 to 65535"));
        assert!(err("localhost:+80").contains("from 1 to 65535"));
        assert!(err("localhost:redis").contains("from 1 to 65535"));
        assert!(err("my host:6379").contains("has ` ` in its host"));
    }

    #[test]
    fn urls_get_a_hint_with_the_host_and_port() {
        let Err(e) = parse_address("redis://user:secret@cache.internal:6380/2") else {
            panic!("a URL parsed as an address");
        };
        assert!(
            e.message.contains("\"cache.internal:6380\""),
            "{}",
            e.message
        );
        assert!(!e.message.contains("secret"), "{}", e.message);
        assert_eq!(e.shown, "\"redis://***@cache.internal:6380/2\"");
        assert!(err("rediss://cache:6380").contains("`tls`"));
    }

    /// Every shape a password can hide in is described and shown without it.
    #[test]
    fn credentials_never_come_back_in_messages_or_values() {
        for text in [
            " redis://app:PW@host:6379",
            "redis://app:PW@host:6379 ",
            "app:PW@host:6379",
            "PW@host:6379",
            "host:6379?password=PW",
            " host:6379?password=PW ",
            "redis://host:6379?password=PW",
            "unix://app:PW@/tmp/redis.sock",
        ] {
            let Err(e) = parse_address(text) else {
                panic!("{text:?} parsed");
            };
            assert!(!e.message.contains("PW"), "{text:?}: {}", e.message);
            assert!(!e.shown.contains("PW"), "{text:?}: {}", e.shown);
        }
        assert!(err("app:PW@host:6379").contains("\"host:6379\""));
        assert!(err("host:6379?password=PW").contains("\"host:6379\""));
    }

    #[test]
    fn unix_sockets_get_their_own_message() {
        let message = err("unix:///tmp/redis.sock");
        assert!(message.contains("/tmp/redis.sock"), "{message}");
        assert!(message.contains("TCP only"), "{message}");
        assert!(!message.contains("such as \"\""), "{message}");
    }
}
