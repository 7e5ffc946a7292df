//! go-redis' retry policy: which failures are worth another attempt, and how long to wait
//! before it.

use std::io;
use std::time::Duration;

use rand::Rng;
use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::config::RetryConfig;

/// How often and how patiently a handle retries a failed command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt (go-redis' `MaxRetries`; 3 allows 4 attempts).
    pub max_retries: u32,
    /// The shortest wait before a retry.
    pub min_backoff: Duration,
    /// The longest wait before a retry.
    pub max_backoff: Duration,
}

impl From<RetryConfig> for RetryPolicy {
    fn from(config: RetryConfig) -> Self {
        Self {
            max_retries: config.max_retries,
            min_backoff: config.min_backoff,
            max_backoff: config.max_backoff,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry), as go-redis computes it:
    /// `min + random[0, min * 2^retry)`, never above `max`.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        self.backoff_with(retry, &mut rand::rng())
    }

    /// The wait before the next attempt after `done` retries out of `budget`, or `None` when
    /// the budget is spent or the failure is not `retryable`: the one place both pools and
    /// clusters decide whether to try again.
    pub(crate) fn next_wait(&self, done: u32, budget: u32, retryable: bool) -> Option<Duration> {
        (retryable && done < budget).then(|| self.backoff(done + 1))
    }

    fn backoff_with(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let min = self.min_backoff.as_nanos();
        if min == 0 {
            return Duration::ZERO;
        }
        // An overflowing shift means the window is far beyond `max` anyway.
        let Some(window) = 1u128.checked_shl(retry).and_then(|f| min.checked_mul(f)) else {
            return self.max_backoff;
        };
        let wait = min + rng.random_range(0..window);
        let max = self.max_backoff.as_nanos();
        if wait > max {
            return self.max_backoff;
        }
        Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
    }
}

/// Whether a failed command is worth retrying, following go-redis: connection drops, network
/// errors other than timeouts, and the server replies that mean "not now" rather than "no".
pub(crate) fn is_retryable(error: &RedisError) -> bool {
    match error.kind() {
        ErrorKind::Io => !error.is_timeout(),
        ErrorKind::Server(kind) => match kind {
            ServerErrorKind::BusyLoading
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown => true,
            ServerErrorKind::ResponseError => is_max_clients(error),
            _ => false,
        },
        ErrorKind::Extension => is_max_clients(error),
        _ => false,
    }
}

/// The server refused a new connection because `maxclients` is reached.
pub(crate) fn is_max_clients(error: &RedisError) -> bool {
    error.to_string().contains("max number of clients reached")
}

/// Whether the connection a command failed on must be replaced before the next attempt.
/// `READONLY`: a replica refused a write (to a pool behind Sentinel, a demoted master).
pub(crate) fn is_read_only(error: &RedisError) -> bool {
    matches!(error.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly))
}

pub(crate) fn breaks_connection(error: &RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error()
}

/// An I/O error of kind `kind` carrying `message`, as redis-rs reports network failures.
pub(crate) fn io_error(kind: io::ErrorKind, message: String) -> RedisError {
    RedisError::from(io::Error::new(kind, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy(min_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            min_backoff: Duration::from_millis(min_ms),
            max_backoff: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn backoff_stays_within_go_redis_window() {
        let policy = policy(8, 512);
        let mut rng = StdRng::seed_from_u64(7);
        for retry in 1..=5u32 {
            let window = Duration::from_millis(8 * (1 << retry));
            let mut seen_max = Duration::ZERO;
            for _ in 0..2_000 {
                let wait = policy.backoff_with(retry, &mut rng);
                assert!(
                    wait >= Duration::from_millis(8),
                    "retry {retry}: {wait:?} below min"
                );
                assert!(
                    wait < Duration::from_millis(8) + window,
                    "retry {retry}: {wait:?} beyond min + min*2^n"
                );
                assert!(wait <= Duration::from_millis(512));
                seen_max = seen_max.max(wait);
            }
            // The randomness really spreads over the window, not just its start.
            assert!(
                seen_max > Duration::from_millis(8) + window / 2,
                "retry {retry}"
            );
        }
    }

    #[test]
    fn backoff_is_clamped_to_max() {
        let policy = policy(100, 150);
        let mut rng = StdRng::seed_from_u64(1);
        let waits: Vec<_> = (0..500).map(|_| policy.backoff_with(4, &mut rng)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(150)));
        assert!(waits.contains(&Duration::from_millis(150)));
    }

    #[test]
    fn backoff_survives_huge_retry_numbers() {
        let policy = policy(8, 512);
        assert_eq!(policy.backoff(200), Duration::from_millis(512));
    }

    #[test]
    fn next_wait_stops_at_the_budget_and_at_final_errors() {
        let policy = policy(8, 512);
        assert!(policy.next_wait(0, 3, true).is_some());
        assert!(policy.next_wait(2, 3, true).is_some());
        assert_eq!(policy.next_wait(3, 3, true), None, "budget spent");
        assert_eq!(policy.next_wait(0, 3, false), None, "not worth retrying");
        assert_eq!(policy.next_wait(0, 0, true), None, "max_retries -1");
    }

    #[test]
    fn zero_min_backoff_means_no_wait() {
        assert_eq!(policy(0, 512).backoff(3), Duration::ZERO);
    }

    #[test]
    fn retries_network_failures_but_not_timeouts() {
        let reset = io_error(io::ErrorKind::ConnectionReset, "reset".into());
        let refused = io_error(io::ErrorKind::ConnectionRefused, "refused".into());
        let timeout = io_error(io::ErrorKind::TimedOut, "slow".into());
        assert!(is_retryable(&reset));
        assert!(is_retryable(&refused));
        assert!(!is_retryable(&timeout));
    }

    #[test]
    fn retries_transient_server_replies_only() {
        let parse = |reply: &str| {
            redis::parse_redis_value(format!("-{reply}\r\n").as_bytes())
                .map(|v| v.extract_error().unwrap_err())
                .unwrap_or_else(|e| e)
        };
        for transient in [
            "LOADING Redis is loading the dataset in memory",
            "READONLY You can't write against a read only replica.",
            "CLUSTERDOWN The cluster is down",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "MASTERDOWN Link with MASTER is down",
            "ERR max number of clients reached",
        ] {
            assert!(
                is_retryable(&parse(transient)),
                "{transient} should be retried"
            );
        }
        for final_reply in [
            "ERR unknown command 'FOO'",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            "NOAUTH Authentication required.",
            "CROSSSLOT Keys in request don't hash to the same slot",
        ] {
            assert!(
                !is_retryable(&parse(final_reply)),
                "{final_reply} must not be retried"
            );
        }
    }
}
