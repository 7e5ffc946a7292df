//! Calling a backend: the request KrakenD would send (its path from `url_pattern`, only the
//! headers and query strings the endpoint lets through), to the backend's hosts in turn, and
//! its response passed back as it came (KrakenD's `no-op` encoding).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::body::Body;
use crate::net::tls;

/// The HTTP client every backend call goes through: HTTP/1.1, plain or TLS, with pooled
/// keep-alive connections.
pub(crate) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// The client, verifying TLS backends against the system's trust store.
pub(crate) fn client() -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(tls::provider())
        .map_err(|error| format!("cannot load the system's trusted certificates: {error}"))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https))
}

/// Which client headers or query strings reach the backend: KrakenD's `input_headers` and
/// `input_query_strings` (none by default, `["*"]` for all).
#[derive(Clone, Debug)]
pub(crate) enum Allowed {
    All,
    Only(Vec<String>),
}

impl Allowed {
    pub(crate) fn from_list(list: &[String]) -> Self {
        if list.iter().any(|item| item == "*") {
            Allowed::All
        } else {
            Allowed::Only(list.to_vec())
        }
    }

    fn header(&self, name: &HeaderName) -> bool {
        match self {
            Allowed::All => true,
            Allowed::Only(names) => names.iter().any(|n| n.eq_ignore_ascii_case(name.as_str())),
        }
    }

    fn query(&self, name: &str) -> bool {
        match self {
            Allowed::All => true,
            Allowed::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

/// A backend's hosts, taken in turn.
pub(crate) struct Hosts {
    hosts: Vec<String>,
    next: AtomicUsize,
}

impl Hosts {
    /// `hosts`, each a base URL (`http://users:8080`); a trailing `/` is dropped. Refuses one
    /// that is not an `http` or `https` URL with a host.
    pub(crate) fn new(hosts: &[String]) -> Result<Self, (usize, String)> {
        let mut checked = Vec::with_capacity(hosts.len());
        for (index, host) in hosts.iter().enumerate() {
            let trimmed = host.trim_end_matches('/');
            let uri: Uri = trimmed
                .parse()
                .map_err(|error| (index, format!("is not a URL: {error}")))?;
            match uri.scheme_str() {
                Some("http" | "https") => {}
                _ => {
                    return Err((
                        index,
                        "is not an http:// or https:// URL, such as \"http://users:8080\""
                            .to_owned(),
                    ));
                }
            }
            if uri.host().is_none() || uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
                return Err((
                    index,
                    "must be a scheme and host (and port) only, such as \"http://users:8080\"; \
                     put the path in url_pattern"
                        .to_owned(),
                ));
            }
            checked.push(trimmed.to_owned());
        }
        Ok(Self {
            hosts: checked,
            next: AtomicUsize::new(0),
        })
    }

    /// The host for the next call: round robin.
    pub(crate) fn next(&self) -> &str {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        &self.hosts[turn % self.hosts.len()]
    }
}

/// Headers that describe one connection, not the message: never forwarded either way.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// The headers of a request on its way to a backend: those of `client` that `allowed` lets
/// through, the body's `Content-Type` (a body is forwarded, and it means nothing without it),
/// and the forwarding headers. Framing (`Content-Length`, `Transfer-Encoding`) is the HTTP
/// client's to write from the body it sends.
pub(crate) fn allowed_headers(
    client: &HeaderMap,
    allowed: &Allowed,
    peer: SocketAddr,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in client {
        let framing = name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::HOST;
        if framing || HOP_BY_HOP.contains(name) {
            continue;
        }
        if allowed.header(name) || name == header::CONTENT_TYPE {
            headers.append(name.clone(), value.clone());
        }
    }
    let forwarded_for = match client
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
    {
        Some(earlier) if allowed.header(&HeaderName::from_static("x-forwarded-for")) => {
            format!("{earlier}, {}", peer.ip())
        }
        _ => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    if let Some(host) = client.get(header::HOST) {
        headers.insert("x-forwarded-host", host.clone());
    }
    if !headers.contains_key(header::USER_AGENT) {
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    }
    headers
}

const USER_AGENT: &str = concat!("redplug/", env!("CARGO_PKG_VERSION"));

/// `query` with only the parameters `allowed` lets through, in order.
pub(crate) fn backend_query(query: Option<&str>, allowed: &Allowed) -> Option<String> {
    let query = query?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            allowed.query(name)
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// The URI of a backend call: `host`, then `path` (which may carry a query of its own), then
/// the client's allowed `query`.
pub(crate) fn backend_uri(host: &str, path: &str, query: Option<&str>) -> Result<Uri, String> {
    let mut uri = format!("{host}{path}");
    if let Some(query) = query {
        uri.push(if path.contains('?') { '&' } else { '?' });
        uri.push_str(query);
    }
    uri.parse()
        .map_err(|error| format!("`{uri}` is not a URI to call: {error}"))
}

/// Sends `request` and hands back the backend's response with its body streamed (stalling for
/// longer than `idle` fails it). A backend that cannot be reached is a 502.
pub(crate) async fn call(
    client: &HttpClient,
    request: http::Request<Body>,
    idle: Duration,
    scope: &Arc<str>,
) -> http::Response<Body> {
    let target = request.uri().clone();
    match client.request(request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            parts.headers.remove(header::TRANSFER_ENCODING);
            http::Response::from_parts(parts, Body::streamed(body, idle))
        }
        Err(error) => {
            tracing::warn!(
                scope = %scope,
                backend = %target,
                error = %error_chain(&error),
                "backend call failed; answering 502"
            );
            status(StatusCode::BAD_GATEWAY)
        }
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// An error and its causes, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A response with `status` and its reason as a one-line text body.
pub(crate) fn status(status: StatusCode) -> http::Response<Body> {
    crate::pipeline::plain(status).map(Body::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_headers_and_query_strings_reach_the_backend() {
        let mut client = HeaderMap::new();
        client.insert("x-api-key", HeaderValue::from_static("k"));
        client.insert("cookie", HeaderValue::from_static("session=1"));
        client.insert("content-type", HeaderValue::from_static("application/json"));
        client.insert("content-length", HeaderValue::from_static("2"));
        client.insert("connection", HeaderValue::from_static("keep-alive"));
        client.insert("host", HeaderValue::from_static("gateway:8080"));
        let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();

        let none = allowed_headers(&client, &Allowed::from_list(&[]), peer);
        let mut names: Vec<&str> = none.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "content-type",
                "user-agent",
                "x-forwarded-for",
                "x-forwarded-host"
            ]
        );
        assert_eq!(none["x-forwarded-for"], "10.1.2.3");
        assert_eq!(none["x-forwarded-host"], "gateway:8080");

        let some = allowed_headers(&client, &Allowed::from_list(&["X-API-Key".into()]), peer);
        assert_eq!(some["x-api-key"], "k");
        assert!(!some.contains_key("cookie"));
        let all = allowed_headers(&client, &Allowed::from_list(&["*".into()]), peer);
        assert_eq!(all["cookie"], "session=1");
        assert!(!all.contains_key("connection") && !all.contains_key("content-length"));

        let allowed = Allowed::from_list(&["page".into(), "q".into()]);
        assert_eq!(
            backend_query(Some("page=2&Page=3&secret=x&q"), &allowed).as_deref(),
            Some("page=2&q")
        );
        assert_eq!(backend_query(Some("secret=x"), &allowed), None);
        assert_eq!(
            backend_uri("http://b:1", "/users/1?fixed=1", Some("page=2"))
                .unwrap()
                .to_string(),
            "http://b:1/users/1?fixed=1&page=2"
        );
    }

    #[test]
    fn hosts_are_base_urls_taken_in_turn() {
        let hosts = Hosts::new(&["http://a:1/".into(), "https://b".into()]).unwrap();
        let turns: Vec<&str> = (0..3).map(|_| hosts.next()).collect();
        assert_eq!(turns, ["http://a:1", "https://b", "http://a:1"]);
        assert_eq!(
            Hosts::new(&["a:1".into()]).err().unwrap().1,
            "is not an http:// or https:// URL, such as \"http://users:8080\""
        );
        assert!(
            Hosts::new(&["http://a/v1".into()])
                .err()
                .unwrap()
                .1
                .contains("url_pattern")
        );
    }
}
