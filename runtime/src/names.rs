//! Names against names: which configured name a typo most likely meant, and which plugin fields
//! name a connection the config does not define. Startup, the registry and `redplug check` all
//! decide this here, the same way.

use redplug::{Need, NeedKind, Registration};

use crate::error::UnresolvedNeed;

/// The candidate most like `wanted`, if one is close enough to be a typo of it (case aside), or
/// else the one candidate that has `wanted` as a word (`dial` for `dial_timeout`).
pub(crate) fn closest<'c>(wanted: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let lower = wanted.to_lowercase();
    let typo = candidates
        .iter()
        .map(|candidate| {
            let score = strsim::normalized_damerau_levenshtein(&lower, &candidate.to_lowercase());
            (score, *candidate)
        })
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate);
    typo.or_else(|| {
        let mut holders = candidates.iter().filter(|candidate| {
            candidate
                .split(['_', '-', '.'])
                .any(|word| word.eq_ignore_ascii_case(&lower))
        });
        match (holders.next(), holders.next()) {
            (Some(only), None) => Some(*only),
            _ => None,
        }
    })
}

/// Every required need of `registrations` that names no configured pool or cluster, each with a
/// suggestion; optional needs are fine either way.
pub(crate) fn unresolved(
    registrations: &[&'static Registration],
    pools: &[&str],
    clusters: &[&str],
) -> Vec<UnresolvedNeed> {
    registrations
        .iter()
        .flat_map(|registration| {
            registration
                .needs
                .iter()
                .map(move |need| (*registration, need))
        })
        .filter(|(_, need)| !need.optional && !configured(need, pools, clusters))
        .map(|(registration, need)| unresolved_need(registration, need, pools, clusters))
        .collect()
}

/// Whether the name `need` asks for is configured as the kind it asks for.
pub(crate) fn configured(need: &Need, pools: &[&str], clusters: &[&str]) -> bool {
    match need.kind {
        NeedKind::Pool => pools.contains(&need.name),
        NeedKind::Cluster => clusters.contains(&need.name),
    }
}

/// Describes `need` of `registration` as unresolved against the configured `pools` and
/// `clusters`: a near name of the same kind, or the same name configured as the other kind.
pub(crate) fn unresolved_need(
    registration: &Registration,
    need: &Need,
    pools: &[&str],
    clusters: &[&str],
) -> UnresolvedNeed {
    let (same, other, other_kind) = match need.kind {
        NeedKind::Pool => (pools, clusters, NeedKind::Cluster),
        NeedKind::Cluster => (clusters, pools, NeedKind::Pool),
    };
    UnresolvedNeed {
        plugin: registration.name.to_owned(),
        type_name: registration.type_name.to_owned(),
        field: need.field.to_owned(),
        kind: need.kind,
        name: need.name.to_owned(),
        did_you_mean: closest(need.name, same).map(str::to_owned),
        other_kind: other.contains(&need.name).then_some(other_kind),
        configured: same.iter().map(|name| (*name).to_owned()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggests_near_names_only() {
        let names = ["redis_at_eight", "redis_at_seven", "sessions"];
        assert_eq!(closest("redis_at_eigth", &names), Some("redis_at_eight"));
        assert_eq!(closest("session", &names), Some("sessions"));
        assert_eq!(closest("cache", &names), None);
    }

    #[test]
    fn finds_typos_and_whole_words_but_not_strangers() {
        let known = ["name", "dial_timeout", "pool_timeout", "password"];
        assert_eq!(closest("dial_timout", &known), Some("dial_timeout"));
        assert_eq!(closest("pasword", &known), Some("password"));
        assert_eq!(closest("Name", &known), Some("name"));
        assert_eq!(closest("pool_timeuot", &known), Some("pool_timeout"));
        assert_eq!(closest("sentinel", &known), None);
        assert_eq!(closest("dial", &known), Some("dial_timeout"));
        // Two keys end in `timeout`: no guess.
        assert_eq!(closest("timeout", &known), None);
    }
}
