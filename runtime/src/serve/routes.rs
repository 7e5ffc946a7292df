//! Routing: the endpoints' path patterns (KrakenD's `{param}` placeholders) in one `matchit`
//! tree, each path with the methods it answers, and the `url_pattern` of each backend with
//! the endpoint's parameters substituted into it.

use std::collections::{HashMap, HashSet};

use http::Method;

/// A backend's `url_pattern`, split into literal text and `{param}` placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UrlPattern {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Param(String),
}

impl UrlPattern {
    /// Parses `pattern`. Every placeholder must be one of `params` (the endpoint's), or the
    /// backend could never be called with a value for it.
    pub(crate) fn parse(pattern: &str, params: &[String]) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = pattern;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}').map(|at| open + at) else {
                return Err(format!(
                    "has a `{{` without its `}}` at byte {}",
                    pattern.len() - rest.len() + open
                ));
            };
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let name = &rest[open + 1..close];
            if !params.iter().any(|param| param == name) {
                let known = if params.is_empty() {
                    "the endpoint has no parameters".to_owned()
                } else {
                    let names: Vec<String> = params.iter().map(|p| format!("{{{p}}}")).collect();
                    format!("the endpoint's are {}", names.join(", "))
                };
                return Err(format!(
                    "uses {{{name}}}, which the endpoint's path does not define ({known})"
                ));
            }
            parts.push(Part::Param(name.to_owned()));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The pattern with each placeholder replaced by its value in `params`.
    pub(crate) fn render<'p>(&self, params: impl Fn(&str) -> Option<&'p str>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Param(name) => out.push_str(params(name).unwrap_or_default()),
            }
        }
        out
    }
}

/// The `{param}` names of an endpoint's path, in order.
pub(crate) fn params_of(path: &str) -> Vec<String> {
    let mut params = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|at| open + at) else {
            break;
        };
        let name = rest[open + 1..close].trim_start_matches('*');
        params.push(name.to_owned());
        rest = &rest[close + 1..];
    }
    params
}

/// Every path the gateway answers, each with its methods.
pub(crate) struct Routes<T> {
    tree: matchit::Router<usize>,
    paths: Vec<Vec<(Method, T)>>,
    /// Each pattern added, with its index in `paths`.
    patterns: HashMap<String, usize>,
    /// `(method, path)` pairs already added, to refuse a second endpoint with both.
    taken: HashSet<(Method, String)>,
}

/// What a lookup found.
pub(crate) enum Found<'r, T> {
    /// The route, and the path's parameters by name.
    Route(&'r T, Vec<(String, String)>),
    /// Nothing answers this path and method.
    Nothing,
}

impl<T> Routes<T> {
    pub(crate) fn new() -> Self {
        Self {
            tree: matchit::Router::new(),
            paths: Vec::new(),
            patterns: HashMap::new(),
            taken: HashSet::new(),
        }
    }

    /// Adds `route` for `method` at `path`. Refuses a path that clashes with one added before
    /// (`/v1/{id}` after `/v1/{name}`) and a method and path that are taken.
    pub(crate) fn add(&mut self, method: Method, path: &str, route: T) -> Result<(), String> {
        if !self.taken.insert((method.clone(), path.to_owned())) {
            return Err(format!(
                "{method} {path} is served by an endpoint listed before"
            ));
        }
        if let Some(&index) = self.patterns.get(path) {
            self.paths[index].push((method, route));
            return Ok(());
        }
        let index = self.paths.len();
        self.tree.insert(path, index).map_err(|error| match error {
            matchit::InsertError::Conflict { with } => format!(
                "clashes with the path `{with}` of an endpoint listed before: the router cannot \
                 tell them apart; give them distinct literal segments"
            ),
            other => format!("is not a path the router accepts: {other}"),
        })?;
        self.patterns.insert(path.to_owned(), index);
        self.paths.push(vec![(method, route)]);
        Ok(())
    }

    /// The route for `method` at `path`.
    pub(crate) fn find(&self, method: &Method, path: &str) -> Found<'_, T> {
        let Ok(found) = self.tree.at(path) else {
            return Found::Nothing;
        };
        let Some((_, route)) = self.paths[*found.value]
            .iter()
            .find(|(allowed, _)| allowed == method)
        else {
            return Found::Nothing;
        };
        let params = found
            .params
            .iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Found::Route(route, params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_pattern_takes_the_endpoint_s_parameters() {
        let params = params_of("/v1/users/{id}/posts/{post}");
        assert_eq!(params, ["id", "post"]);
        let pattern = UrlPattern::parse("/users/{id}/p/{post}.json", &params).unwrap();
        let values = [("id", "42"), ("post", "7")];
        let rendered =
            pattern.render(|name| values.iter().find(|(n, _)| *n == name).map(|(_, v)| *v));
        assert_eq!(rendered, "/users/42/p/7.json");
    }

    #[test]
    fn a_url_pattern_with_an_unknown_parameter_is_refused() {
        let error = UrlPattern::parse("/users/{user}", &["id".to_owned()]).unwrap_err();
        assert_eq!(
            error,
            "uses {user}, which the endpoint's path does not define (the endpoint's are {id})"
        );
        let error = UrlPattern::parse("/users/{id", &["id".to_owned()]).unwrap_err();
        assert_eq!(error, "has a `{` without its `}` at byte 7");
    }

    #[test]
    fn methods_share_a_path_and_clashing_paths_are_refused() {
        let mut routes = Routes::new();
        routes.add(Method::GET, "/v1/users/{id}", 1).unwrap();
        routes.add(Method::POST, "/v1/users/{id}", 2).unwrap();
        routes.add(Method::GET, "/v1/users/{id}/posts", 3).unwrap();
        assert_eq!(
            routes.add(Method::GET, "/v1/users/{id}", 4).unwrap_err(),
            "GET /v1/users/{id} is served by an endpoint listed before"
        );
        let clash = routes.add(Method::GET, "/v1/users/{name}", 5).unwrap_err();
        assert!(
            clash.starts_with("clashes with the path `/v1/users/{id}`"),
            "{clash}"
        );

        let Found::Route(route, params) = routes.find(&Method::POST, "/v1/users/42") else {
            panic!("POST /v1/users/42 is routed");
        };
        assert_eq!(
            (*route, params),
            (2, vec![("id".to_owned(), "42".to_owned())])
        );
        assert!(matches!(
            routes.find(&Method::DELETE, "/v1/users/42"),
            Found::Nothing
        ));
        assert!(matches!(
            routes.find(&Method::GET, "/v1/nothing"),
            Found::Nothing
        ));
    }
}
