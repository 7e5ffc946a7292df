//! The tables, the side-by-side summary for the README, and the targets.

use crate::{Group, Row, Sample, Samples, Settings, Target};

/// What a target compares.
#[derive(Clone, Copy)]
enum Measure {
    /// Calls per second, against the fastest of the peers in each round.
    Throughput,
    /// Client CPU per call, against the most frugal of the peers in each round: the ratio is
    /// theirs over ours, so above 1 means cheaper than every peer.
    Cpu,
}

struct View<'a> {
    samples: &'a Samples,
}

impl View<'_> {
    fn of(&self, group: Group, tasks: usize, row: Row) -> &[Sample] {
        self.samples
            .get(&(group, tasks, row))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether any row of `group` ran at any concurrency.
    fn measured(&self, group: Group) -> bool {
        group.concurrency().iter().any(|&tasks| {
            group
                .rows()
                .iter()
                .any(|&row| !self.of(group, tasks, row).is_empty())
        })
    }

    fn median(&self, group: Group, tasks: usize, row: Row, field: fn(&Sample) -> f64) -> f64 {
        median(self.of(group, tasks, row).iter().map(field).collect())
    }

    /// The best of `peers` at `tasks` over the whole run: the highest median calls per second,
    /// or the lowest median CPU per call. Choosing it once, rather than the best peer of each
    /// round, keeps the ratios unbiased: the fastest of three noisy samples is faster than
    /// any one client's typical round.
    fn best(&self, group: Group, tasks: usize, peers: &[Row], measure: Measure) -> Option<Row> {
        let measured = peers
            .iter()
            .copied()
            .filter(|&peer| !self.of(group, tasks, peer).is_empty());
        match measure {
            Measure::Throughput => measured.max_by(|&a, &b| {
                let speed = |row| self.median(group, tasks, row, |s| s.ops_per_sec);
                speed(a).total_cmp(&speed(b))
            }),
            Measure::Cpu => measured.min_by(|&a, &b| {
                let cpu = |row| self.median(group, tasks, row, |s| s.cpu_us_per_op);
                cpu(a).total_cmp(&cpu(b))
            }),
        }
    }

    /// Per-round ratios of `row` against the best of `peers` (see [`View::best`]), paired by
    /// round; empty when a row was not measured.
    fn ratios(
        &self,
        group: Group,
        tasks: usize,
        row: Row,
        peers: &[Row],
        measure: Measure,
    ) -> Vec<f64> {
        let Some(best) = self.best(group, tasks, peers, measure) else {
            return Vec::new();
        };
        let ours = self.of(group, tasks, row);
        let theirs = self.of(group, tasks, best);
        ours.iter()
            .zip(theirs)
            .map(|(ours, theirs)| match measure {
                Measure::Throughput => ours.ops_per_sec / theirs.ops_per_sec,
                Measure::Cpu => theirs.cpu_us_per_op / ours.cpu_us_per_op,
            })
            .collect()
    }

    fn ratio(&self, group: Group, tasks: usize, row: Row, peers: &[Row]) -> f64 {
        median(self.ratios(group, tasks, row, peers, Measure::Throughput))
    }
}

/// Prints every table and the targets; true when every measured target is met.
pub fn print(samples: &Samples, settings: &Settings, veth_missing: bool) -> bool {
    let view = View { samples };
    println!();
    println!(
        "medians of {} rounds; x(..) are per-round throughput ratios, median taken; \"best\" is \
         the peer with the highest median ops/s at that concurrency",
        settings.rounds
    );
    for group in Group::ALL {
        table(&view, group);
    }
    println!(
        "cpu us/op: user+sys CPU of this process (or of redis-benchmark for row 5) per call; the \
         server's CPU is not included. srv cmds/op: every cmdstat_* call over calls made.\n\
         cmds/srv read: commands over the server's socket reads (total_reads_processed), i.e. \
         how many commands arrive per read: the batching that saves the shared cores' CPU.\n\
         switches/op: context switches of this process (or of redis-benchmark) per call, \
         threads going to sleep and being preempted: on cores the server shares, often what \
         decides a row."
    );
    markdown(&view);
    targets(&view, veth_missing)
}

fn table(view: &View<'_>, group: Group) {
    if !view.measured(group) {
        return;
    }
    let peers = group.peers();
    println!();
    println!("== {} ==", group.title());
    let mut header = format!(
        "{:>5}  {:<37} {:>9} {:>8} {:>8}",
        "tasks", "row", "ops/s", "p50 us", "p99 us"
    );
    for peer in peers {
        header += &format!(" {:>7}", format!("x({})", peer.tag()));
    }
    if group == Group::Incr(Target::Loopback) || group == Group::Incr(Target::Veth) {
        header += &format!(" {:>7}", "x(5)");
    }
    header += &format!(
        " {:>7} {:>8} {:>9} {:>9} {:>9}",
        "x best", "cpu us", "srv cmds", "cmds/srv", "switches"
    );
    println!("{header}");
    let pad = " ".repeat(header.len().saturating_sub(39));
    println!("{pad}{:>8} {:>9} {:>9} {:>9}", "/op", "/op", "read", "/op");
    for &tasks in group.concurrency() {
        for &row in group.rows() {
            if view.of(group, tasks, row).is_empty() {
                continue;
            }
            let mut line = format!(
                "{:>5}  {:<37} {:>9.0} {:>8.1} {:>8.1}",
                tasks,
                row.label(),
                view.median(group, tasks, row, |s| s.ops_per_sec),
                view.median(group, tasks, row, |s| s.p50_us),
                view.median(group, tasks, row, |s| s.p99_us),
            );
            for &peer in peers {
                line += &format!(" {:>7.2}", view.ratio(group, tasks, row, &[peer]));
            }
            if group == Group::Incr(Target::Loopback) || group == Group::Incr(Target::Veth) {
                line += &format!(
                    " {:>7.2}",
                    view.ratio(group, tasks, row, &[Row::RedisBenchmark])
                );
            }
            line += &format!(
                " {:>7.2} {:>8.2} {:>9.2} {:>9.2} {:>9.3}",
                view.ratio(group, tasks, row, peers),
                view.median(group, tasks, row, |s| s.cpu_us_per_op),
                view.median(group, tasks, row, |s| s.server_cmds_per_op),
                view.median(group, tasks, row, |s| s.cmds_per_read),
                view.median(group, tasks, row, |s| s.switches_per_op),
            );
            println!("{line}");
        }
        println!();
    }
}

/// The README's tables: both paths side by side.
fn markdown(view: &View<'_>) {
    let pairs = [
        (Group::Incr(Target::Loopback), Group::Incr(Target::Veth)),
        (Group::Large(Target::Loopback), Group::Large(Target::Veth)),
        (
            Group::Pipeline(Target::Loopback),
            Group::Pipeline(Target::Veth),
        ),
    ];
    println!();
    println!("-- markdown, loopback | veth; x best = against the peer with the highest median --");
    for (loopback, veth) in pairs {
        // A run of some groups only (`--group`) prints only their tables.
        if !view.measured(loopback) && !view.measured(veth) {
            continue;
        }
        println!();
        println!("{} | veth", loopback.title());
        println!();
        println!(
            "| tasks | row | ops/s | × best peer | CPU µs/op | cmds/srv read | ops/s | × best peer | CPU µs/op | cmds/srv read |"
        );
        println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for &tasks in loopback.concurrency() {
            for &row in loopback.rows() {
                let cells = |group: Group| {
                    if view.of(group, tasks, row).is_empty() {
                        return "– | – | – | –".to_owned();
                    }
                    format!(
                        "{} | {:.2} | {:.2} | {:.1}",
                        thousands(view.median(group, tasks, row, |s| s.ops_per_sec)),
                        view.ratio(group, tasks, row, group.peers()),
                        view.median(group, tasks, row, |s| s.cpu_us_per_op),
                        view.median(group, tasks, row, |s| s.cmds_per_read),
                    )
                };
                if view.of(loopback, tasks, row).is_empty() && view.of(veth, tasks, row).is_empty()
                {
                    continue;
                }
                println!(
                    "| {tasks} | {} | {} | {} |",
                    row.label().replace('_', "\\_"),
                    cells(loopback),
                    cells(veth)
                );
            }
        }
    }
    let cluster = Group::Incr(Target::Cluster);
    if !view.measured(cluster) {
        return;
    }
    println!();
    println!("{}", cluster.title());
    println!();
    println!(
        "| tasks | row | ops/s | p50 µs | p99 µs | × (cr) | × (cf) | CPU µs/op | cmds/srv read |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for &tasks in cluster.concurrency() {
        for &row in cluster.rows() {
            if view.of(cluster, tasks, row).is_empty() {
                continue;
            }
            println!(
                "| {tasks} | {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.1} |",
                row.label(),
                thousands(view.median(cluster, tasks, row, |s| s.ops_per_sec)),
                view.median(cluster, tasks, row, |s| s.p50_us),
                view.median(cluster, tasks, row, |s| s.p99_us),
                view.ratio(cluster, tasks, row, &[Row::RedisRsCluster]),
                view.ratio(cluster, tasks, row, &[Row::FredCluster]),
                view.median(cluster, tasks, row, |s| s.cpu_us_per_op),
                view.median(cluster, tasks, row, |s| s.cmds_per_read),
            );
        }
    }
}

/// One target: `row` against the best of `peers` in `group` at `tasks`, at least `goal`.
struct Goal {
    group: Group,
    tasks: usize,
    row: Row,
    peers: &'static [Row],
    measure: Measure,
    goal: f64,
}

/// The ratios in the README of 2026-12-01 (loopback, against (3)), which no loopback row may
/// drop below: (1) and (2) at 1, 16 and 64 tasks.
const LOOPBACK_BEFORE: [(Row, [f64; 3]); 2] = [
    (Row::Plugin, [0.97, 0.99, 0.99]),
    (Row::Handle, [1.01, 1.00, 1.05]),
];

fn goals() -> Vec<Goal> {
    let mut goals = Vec::new();
    let veth = Group::Incr(Target::Veth);
    let peers: &'static [Row] = &[Row::Multiplexed, Row::MultiplexedNodelay, Row::Fred];
    for row in [Row::Plugin, Row::Handle] {
        for tasks in [1, 16, 64] {
            goals.push(Goal {
                group: veth,
                tasks,
                row,
                peers,
                measure: Measure::Throughput,
                goal: if tasks == 1 { 0.95 } else { 1.0 },
            });
            goals.push(Goal {
                group: veth,
                tasks,
                row,
                peers,
                measure: Measure::Cpu,
                goal: 1.0,
            });
        }
    }
    let loopback = Group::Incr(Target::Loopback);
    for (row, before) in LOOPBACK_BEFORE {
        for (tasks, goal) in [1, 16, 64].into_iter().zip(before) {
            goals.push(Goal {
                group: loopback,
                tasks,
                row,
                peers: &[Row::Multiplexed],
                measure: Measure::Throughput,
                goal,
            });
        }
    }
    goals.push(Goal {
        group: loopback,
        tasks: 64,
        row: Row::Plugin,
        peers: &[Row::Deadpool],
        measure: Measure::Throughput,
        goal: 3.0,
    });
    let cluster = Group::Incr(Target::Cluster);
    for tasks in [16, 64] {
        for (peer, goal) in [(Row::RedisRsCluster, 1.0), (Row::FredCluster, 0.95)] {
            for measure in [Measure::Throughput, Measure::Cpu] {
                goals.push(Goal {
                    group: cluster,
                    tasks,
                    row: Row::Cluster,
                    peers: match peer {
                        Row::RedisRsCluster => &[Row::RedisRsCluster],
                        _ => &[Row::FredCluster],
                    },
                    measure,
                    goal,
                });
            }
        }
    }
    goals
}

fn targets(view: &View<'_>, veth_missing: bool) -> bool {
    println!();
    if veth_missing {
        println!("the veth targets were not measured: the veth path did not run (see above)");
    }
    let mut missed = Vec::new();
    let mut unmeasured = 0;
    for goal in goals() {
        let peers: Vec<String> = goal
            .peers
            .iter()
            .map(|p| format!("({})", p.tag()))
            .collect();
        let what = format!(
            "{} ({}) {} {} at {} tasks",
            goal.group.name(),
            goal.row.tag(),
            match goal.measure {
                Measure::Throughput => "ops/s vs",
                Measure::Cpu => "cpu/op (theirs/ours) vs",
            },
            peers.join("/"),
            goal.tasks
        );
        let ratios = view.ratios(goal.group, goal.tasks, goal.row, goal.peers, goal.measure);
        if ratios.is_empty() {
            unmeasured += 1;
            continue;
        }
        let best = view
            .best(goal.group, goal.tasks, goal.peers, goal.measure)
            .map_or_else(String::new, |best| format!("best ({})", best.tag()));
        let interval = median_interval(ratios.clone());
        let value = median(ratios);
        let pass = value >= goal.goal;
        let shown = interval.map_or_else(
            || "too few rounds for a 95% interval".to_owned(),
            |(lo, hi)| format!("95% {lo:.2}..{hi:.2}"),
        );
        println!(
            "target {what:<52} {value:>5.2}x (goal >= {:.2}x) {}  {best:<9} {shown}",
            goal.goal,
            if pass { "PASS" } else { "MISS" }
        );
        if !pass {
            let noise = match interval {
                Some((_, hi)) if hi >= goal.goal => {
                    " (the goal is inside the 95% interval: more rounds may tell)"
                }
                Some(_) => " (the whole 95% interval is below the goal)",
                None => "",
            };
            missed.push(format!("{what}: {value:.2}x < {:.2}x{noise}", goal.goal));
        }
    }
    if unmeasured > 0 {
        println!("{unmeasured} target(s) not measured in this run");
    }
    if missed.is_empty() {
        println!("every measured target met");
        true
    } else {
        println!("{} target(s) missed:", missed.len());
        for miss in &missed {
            println!("  - {miss}");
        }
        false
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// A distribution-free 95% confidence interval for the median of `values`: the order
/// statistics `k` and `n + 1 - k`, with `k` the largest rank such that fewer than `k` of `n`
/// fair coin flips land heads with probability at most 2.5%. It assumes nothing about the
/// ratios' distribution, which on a shared machine is skewed and has long tails. `None` below
/// 6 values, where no such pair exists.
fn median_interval(mut values: Vec<f64>) -> Option<(f64, f64)> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    // P(heads < k) for k = 1, 2, ...: the binomial(n, 1/2) distribution's lower tail, built
    // from ln P(heads = 0) = -n ln 2 so that it does not underflow for long runs.
    let mut ln_pmf = -(n as f64) * std::f64::consts::LN_2;
    let mut below = 0.0;
    let mut k = 0;
    for heads in 0..n / 2 {
        below += ln_pmf.exp();
        if below > 0.025 {
            break;
        }
        k = heads + 1;
        ln_pmf += ((n - heads) as f64).ln() - ((heads + 1) as f64).ln();
    }
    (k > 0).then(|| (values[k - 1], values[n - k]))
}

/// `1234567.8` as `1,234,568`.
fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
