//! Startup cost of the registry walk: from a parsed config to every plugin built with its
//! pools injected, for 0, 100, 1,000 and 10,000 plugins with 3 needs each against 100 pools.
//!
//! Pools are lazy (`min_idle_conns` 0), so nothing connects: the time is config-to-plugins
//! work only: name checks, building 100 pool engines, resolving every need, constructing every
//! plugin and the startup report. The 0-plugin row is the fixed cost of the 100 pools; the
//! per-plugin column subtracts it, and is flat when the walk is linear.
//!
//! Writing 10,000 `#[derive(Plugin)]` types is not practical, so 16 derived types (3 pool
//! fields each) serve as templates: each generated plugin is `Registration::of::<T>` with its
//! own name and its own three pool names, leaked to get the `&'static` the runtime takes. The
//! constructor that runs is the derive's own.
//!
//! ```text
//! cargo bench --bench startup
//! cargo bench --bench startup -- --reps 5
//! ```

use std::time::{Duration, Instant};

use redplug::prelude::*;
use redplug::{Need, NeedKind, Registration, SourceLocation};
use redplug_runtime::Runtime;
use redplug_runtime::config::{self, Config};

const POOLS: usize = 100;
const NEEDS: usize = 3;
const SIZES: [usize; 4] = [0, 100, 1_000, 10_000];
/// The issue's target for 1,000 plugins.
const TARGET_1000: Duration = Duration::from_millis(20);

macro_rules! template_plugins {
    ($($ty:ident),+ $(,)?) => {
        $(
            #[derive(Plugin)]
            #[allow(dead_code)] // built, never run
            struct $ty {
                #[redis_pool("pool_000")]
                a: RedisPool,
                #[redis_pool("pool_001")]
                b: RedisPool,
                #[redis_pool("pool_002")]
                c: RedisPool,
            }

            impl Middleware for $ty {}
        )+

        /// A constructor of a fresh registration per template type.
        fn templates() -> Vec<fn() -> Registration> {
            vec![$(|| Registration::of::<$ty>(
                concat!("startup::", stringify!($ty)),
                SourceLocation { file: file!(), line: line!() },
            )),+]
        }
    };
}

template_plugins!(
    T00, T01, T02, T03, T04, T05, T06, T07, T08, T09, T10, T11, T12, T13, T14, T15
);

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// `count` registrations named `plugin_00000`..., plugin `i` needing pools `i`, `i + 1` and
/// `i + 2` (mod 100), so every pool is asked for.
fn registrations(count: usize, pool_names: &[&'static str]) -> Vec<&'static Registration> {
    let fields = ["a", "b", "c"];
    let templates = templates();
    (0..count)
        .map(|i| {
            let mut registration = templates[i % templates.len()]();
            registration.name = leak(format!("plugin_{i:05}"));
            let needs: Vec<Need> = (0..NEEDS)
                .map(|k| Need {
                    field: fields[k],
                    kind: NeedKind::Pool,
                    name: pool_names[(i + k) % POOLS],
                    optional: false,
                })
                .collect();
            registration.needs = Box::leak(needs.into_boxed_slice());
            &*Box::leak(Box::new(registration))
        })
        .collect()
}

fn config(pool_names: &[&'static str]) -> Config {
    let pools: Vec<serde_json::Value> = pool_names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            // Never dialed: pools are lazy and nothing here sends a command.
            serde_json::json!({ "name": name, "address": format!("127.0.0.1:{}", 20_000 + i) })
        })
        .collect();
    let json = serde_json::json!({
        "version": 3,
        "extra_config": { "redis": { "connection_pools": pools } }
    });
    config::parse(&json.to_string()).expect("the generated config is valid")
}

/// One timed start: config already parsed, registrations already built.
async fn start_once(config: &Config, registrations: &[&'static Registration]) -> Duration {
    let config = config.clone();
    let registrations = registrations.to_vec();
    let expected = registrations.len();
    let began = Instant::now();
    let runtime = Runtime::builder()
        .registrations(registrations)
        .start(config)
        .await
        .expect("every need resolves");
    let elapsed = began.elapsed();
    assert_eq!(runtime.plugins().len(), expected, "every plugin is built");
    runtime.shutdown().await;
    elapsed
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn reps() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|pair| pair[0] == "--reps")
        .map(|pair| pair[1].parse().expect("--reps takes a number"))
        .or_else(|| {
            std::env::var("REDPLUG_BENCH_REPS")
                .ok()
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(15)
        .max(1)
}

fn main() {
    let reps = reps();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let pool_names: Vec<&'static str> = (0..POOLS).map(|i| leak(format!("pool_{i:03}"))).collect();
    let config = config(&pool_names);

    println!(
        "startup: parsed config -> all plugins built; {POOLS} lazy pools, {NEEDS} pool needs per \
         plugin; median of {reps} starts (10,000: of {}); {} cores",
        reps.div_ceil(3),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "{:>8} {:>11} {:>11} {:>17} {:>8}",
        "plugins", "median ms", "min ms", "us/plugin (-0)", "growth"
    );
    let mut results: Vec<(usize, Duration)> = Vec::new();
    for size in SIZES {
        let registrations = registrations(size, &pool_names);
        let reps = if size >= 10_000 {
            reps.div_ceil(3)
        } else {
            reps
        };
        let times: Vec<Duration> = tokio.block_on(async {
            // One untimed start first: page faults, allocator growth, lazy statics.
            start_once(&config, &registrations).await;
            let mut times = Vec::with_capacity(reps);
            for _ in 0..reps {
                times.push(start_once(&config, &registrations).await);
            }
            times
        });
        let fastest = times.iter().min().copied().unwrap_or_default();
        let median = median(times);
        let base = results.first().map_or(Duration::ZERO, |(_, t)| *t);
        let per_plugin = if size == 0 {
            "-".to_owned()
        } else {
            format!(
                "{:.2}",
                median.saturating_sub(base).as_secs_f64() * 1e6 / size as f64
            )
        };
        let growth = match results.last() {
            Some((previous, time)) if *previous > 0 => format!(
                "x{:.1}",
                median.as_secs_f64() / time.as_secs_f64().max(f64::MIN_POSITIVE)
            ),
            _ => "-".to_owned(),
        };
        println!(
            "{:>8} {:>11.3} {:>11.3} {:>17} {:>8}",
            size,
            median.as_secs_f64() * 1e3,
            fastest.as_secs_f64() * 1e3,
            per_plugin,
            growth
        );
        results.push((size, median));
    }
    let at_1000 = results
        .iter()
        .find(|(size, _)| *size == 1_000)
        .map(|(_, t)| *t)
        .unwrap_or_default();
    println!();
    println!(
        "growth: x10 plugins should cost about x10 above the 0-plugin row (the us/plugin column \
         stays flat when the walk is linear)"
    );
    println!(
        "target 1,000 plugins under {} ms: {:.3} ms  {}",
        TARGET_1000.as_millis(),
        at_1000.as_secs_f64() * 1e3,
        if at_1000 < TARGET_1000 {
            "PASS"
        } else {
            "MISS"
        }
    );
}
