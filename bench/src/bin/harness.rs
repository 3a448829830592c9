//! Runs the load benchmark: every variant of `server`, interleaved over several
//! rounds, loaded by wrk; reads the server's (and Redis's) CPU time from
//! `/proc/<pid>/stat` around each run; checks that every route answers, counts
//! Redis round trips per request and lost increments under concurrency; prints
//! (and writes) the tables.
//!
//! ```text
//! harness [--rounds N] [--seconds S] [--connections C] [--variants a,b,...]
//!         [--server PATH] [--lua PATH] [--out DIR] [--writes-per-conn M]
//!         [--server-cpu K] [--load-cpu K] [--smoke]
//! ```
//!
//! Redis: with `redis-server` on the PATH the harness starts a private
//! instance on a free port (pinned with the server, so its CPU time is ours
//! alone) and stops it at the end; otherwise, or with `BENCH_REDIS_URL` set,
//! it uses that URL (default `redis://127.0.0.1:6379/9`, FLUSHDB'd: never use DB 0).

use keycard_bench::redis_instance::Redis;
use keycard_bench::{cpu, http, resp, stats};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ALL_VARIANTS: &[&str] = &[
    "bare",
    "kc-memory",
    "ts-memory",
    "kc-cookie",
    "pcj",
    "kc-sqlite",
    "kc-redis",
    "ts-redis",
    "floor-memory",
    "floor-redis",
];
const ROUTES: &[(&str, &str)] = &[("read", "GET"), ("write", "POST"), ("new", "GET")];
/// Cookies (sessions) each run spreads its requests over.
const POOL: usize = 64;

/// keycard vs its peer: (keycard variant, peer variant, routes with a target).
const PAIRS: &[(&str, &str, &[&str])] = &[
    ("kc-memory", "ts-memory", &["read", "write", "new"]),
    ("kc-cookie", "pcj", &["read", "write"]),
    ("kc-redis", "ts-redis", &["read", "write", "new"]),
];

/// The floors (no session library, the least work a route can do; see
/// `server.rs`) against the same peers: a floor whose every round costs more
/// than half the peer's median says that no design doing at least the
/// floor's work (with the same client) meets the target on that route.
const FLOORS: &[(&str, &str, &[&str])] = &[
    ("floor-memory", "ts-memory", &["read", "write", "new"]),
    ("floor-redis", "ts-redis", &["read", "write", "new"]),
];

struct Opts {
    rounds: usize,
    seconds: f64,
    connections: usize,
    variants: Vec<String>,
    server: PathBuf,
    lua: PathBuf,
    out: PathBuf,
    writes_per_conn: usize,
    server_cpu: usize,
    load_cpu: usize,
    smoke: bool,
    /// `variant/route`: record a perf profile of the server under wrk instead.
    profile: Option<String>,
}

const USAGE: &str = "usage: harness [--rounds N] [--seconds S] [--connections N] \
[--variants a,b,...] [--server PATH] [--lua PATH] [--out DIR] [--writes-per-conn N] \
[--server-cpu N] [--load-cpu N] [--profile VARIANT] [--smoke]
Load rounds against every server variant on 127.0.0.1 (see bench/README.md).";

fn parse_opts() -> Opts {
    let here = std::env::current_exe().expect("exe path");
    let bin_dir = here.parent().expect("bin dir").to_path_buf();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut o = Opts {
        rounds: 3,
        seconds: 3.0,
        connections: 32,
        variants: ALL_VARIANTS.iter().map(|s| s.to_string()).collect(),
        server: bin_dir.join("server"),
        lua: root.join("scripts/session.lua"),
        out: root.join("results"),
        writes_per_conn: 300,
        server_cpu: 1,
        load_cpu: 0,
        smoke: false,
        profile: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--rounds" => o.rounds = value().parse().expect("--rounds"),
            "--seconds" => o.seconds = value().parse().expect("--seconds"),
            "--connections" => o.connections = value().parse().expect("--connections"),
            "--variants" => o.variants = value().split(',').map(str::to_owned).collect(),
            "--server" => o.server = value().into(),
            "--lua" => o.lua = value().into(),
            "--out" => o.out = value().into(),
            "--writes-per-conn" => o.writes_per_conn = value().parse().expect("--writes-per-conn"),
            "--server-cpu" => o.server_cpu = value().parse().expect("--server-cpu"),
            "--load-cpu" => o.load_cpu = value().parse().expect("--load-cpu"),
            "--profile" => o.profile = Some(value()),
            "--smoke" => {
                o.smoke = true;
                o.rounds = 1;
                o.seconds = 1.0;
                o.writes_per_conn = 50;
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other}\n\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    // One CPU only: everything shares it (CPU per request still holds). Count
    // the machine's CPUs, not this process's affinity (run.sh pins us to 0).
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(1);
    if cpus < 2 {
        o.server_cpu = 0;
        o.load_cpu = 0;
    }
    if !o.variants.iter().any(|v| v == "bare") {
        o.variants.insert(0, "bare".into());
    }
    o
}

// ---------------------------------------------------------------- Server

struct Server {
    child: Child,
    port: u16,
    pid: u32,
}

impl Server {
    fn start(o: &Opts, variant: &str, redis: &Redis, sqlite: &Path) -> Server {
        let port = free_port();
        let mut child = Command::new("taskset")
            .arg("-c")
            .arg(o.server_cpu.to_string())
            .arg(&o.server)
            .arg(variant)
            .arg(port.to_string())
            .env("BENCH_REDIS_URL", redis.url())
            .env("BENCH_SQLITE_PATH", sqlite)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", o.server.display()));
        // `taskset` execs the server: same pid.
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("server {variant} exited: {status}");
            }
            assert!(Instant::now() < deadline, "server {variant} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, port, pid }
    }

    fn cpu(&self) -> cpu::Times {
        cpu::process_times(self.pid).expect("server /proc stat")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn uses_redis(variant: &str) -> bool {
    variant.ends_with("-redis")
}

fn server_side(variant: &str) -> bool {
    matches!(
        variant,
        "kc-memory"
            | "kc-sqlite"
            | "kc-redis"
            | "ts-memory"
            | "ts-redis"
            | "floor-memory"
            | "floor-redis"
    )
}

// ---------------------------------------------------------------- Runs

#[derive(Clone, Debug, serde::Serialize)]
struct Run {
    round: usize,
    variant: String,
    route: String,
    requests: u64,
    seconds: f64,
    rps: f64,
    errors: u64,
    server_cpu_s: f64,
    /// The server's user-space share of `server_cpu_s` (utime).
    server_user_s: f64,
    redis_cpu_s: f64,
    cpu_us_per_req: f64,
    p50_us: f64,
    p99_us: f64,
}

fn cookie_pool(port: u16, n: usize) -> Vec<String> {
    let mut client = http::Client::connect(port).expect("connect");
    (0..n)
        .map(|_| {
            let r = client.request("GET", "/new", None).expect("GET /new");
            assert_eq!(r.status, 200, "GET /new: {}", r.body);
            r.set_cookie.expect("GET /new set no cookie")
        })
        .collect()
}

fn wrk(
    o: &Opts,
    port: u16,
    method: &str,
    path: &str,
    cookies: Option<&Path>,
    seconds: f64,
) -> serde_json::Value {
    let output = Command::new("taskset")
        .arg("-c")
        .arg(o.load_cpu.to_string())
        .arg("wrk")
        .args(["-t1", "-c", &o.connections.to_string()])
        .arg("-d")
        // wrk takes whole seconds.
        .arg(format!("{}s", seconds.round().max(1.0) as u64))
        .args(["--timeout", "5s", "-s"])
        .arg(&o.lua)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .arg("--")
        .arg(method)
        .arg(path)
        .arg(cookies.map(|p| p.display().to_string()).unwrap_or_default())
        .output()
        .expect("run wrk (apt-get install -y wrk)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCHRESULT "))
        .unwrap_or_else(|| {
            panic!(
                "wrk gave no result: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    serde_json::from_str(line).expect("wrk JSON")
}

#[allow(clippy::too_many_arguments)]
fn measure(
    o: &Opts,
    round: usize,
    variant: &str,
    server: &Server,
    redis: &Redis,
    route: &str,
    method: &str,
    cookies: Option<&Path>,
) -> Run {
    let redis_too = uses_redis(variant);
    let (s0, r0) = (
        server.cpu(),
        if redis_too {
            redis.cpu()
        } else {
            Duration::ZERO
        },
    );
    let result = wrk(
        o,
        server.port,
        method,
        &format!("/{route}"),
        cookies,
        o.seconds,
    );
    let (s1, r1) = (
        server.cpu(),
        if redis_too {
            redis.cpu()
        } else {
            Duration::ZERO
        },
    );
    let get = |k: &str| result[k].as_f64().unwrap_or(0.0);
    let requests = get("requests") as u64;
    let seconds = get("duration_us") / 1e6;
    let errors = [
        "connect_errors",
        "read_errors",
        "write_errors",
        "status_errors",
        "timeouts",
    ]
    .iter()
    .map(|k| get(k) as u64)
    .sum();
    let server_cpu_s = (s1.user + s1.system - s0.user - s0.system).as_secs_f64();
    let server_user_s = (s1.user - s0.user).as_secs_f64();
    let redis_cpu_s = (r1 - r0).as_secs_f64();
    Run {
        round,
        variant: variant.into(),
        route: route.into(),
        requests,
        seconds,
        rps: requests as f64 / seconds,
        errors,
        server_cpu_s,
        server_user_s,
        redis_cpu_s,
        cpu_us_per_req: (server_cpu_s + redis_cpu_s) * 1e6 / requests.max(1) as f64,
        p50_us: get("p50_us"),
        p99_us: get("p99_us"),
    }
}

// ---------------------------------------------------------------- Checks

/// Every route answers 200, /read gives an integer, and a /write is visible to
/// the next /read. Returns the problems found.
fn check_routes(variant: &str, port: u16) -> Vec<String> {
    let mut problems = Vec::new();
    let mut c = http::Client::connect(port).expect("connect");
    let new = c.request("GET", "/new", None).expect("GET /new");
    if new.status != 200 {
        problems.push(format!("{variant}: GET /new answered {}", new.status));
    }
    if variant == "bare" {
        for (route, method) in ROUTES.iter().chain(&[("none", "GET")]) {
            let r = c
                .request(method, &format!("/{route}"), None)
                .expect("request");
            if r.status != 200 {
                problems.push(format!(
                    "{variant}: {method} /{route} answered {}",
                    r.status
                ));
            }
        }
        return problems;
    }
    let Some(mut cookie) = new.set_cookie else {
        problems.push(format!("{variant}: GET /new set no cookie"));
        return problems;
    };
    let read = c.request("GET", "/read", Some(&cookie)).expect("GET /read");
    if read.status != 200 || read.body.trim() != "0" {
        problems.push(format!(
            "{variant}: GET /read gave {} {:?}",
            read.status, read.body
        ));
    }
    let write = c
        .request("POST", "/write", Some(&cookie))
        .expect("POST /write");
    if write.status != 200 || write.body.trim() != "1" {
        problems.push(format!(
            "{variant}: POST /write gave {} {:?}",
            write.status, write.body
        ));
    }
    if let Some(updated) = write.set_cookie {
        cookie = updated;
    }
    let read = c.request("GET", "/read", Some(&cookie)).expect("GET /read");
    if read.status != 200 || read.body.trim() != "1" {
        problems.push(format!(
            "{variant}: GET /read after a write gave {} {:?}",
            read.status, read.body
        ));
    }
    let none = c.request("GET", "/none", Some(&cookie)).expect("GET /none");
    if none.status != 200 {
        problems.push(format!("{variant}: GET /none answered {}", none.status));
    }
    problems
}

#[derive(Clone, Debug, serde::Serialize)]
struct WriteCheck {
    variant: String,
    connections: usize,
    sent: u64,
    ok: u64,
    final_value: i64,
    lost: i64,
    seconds: f64,
}

/// `connections` clients POST /write on ONE session at once; every 200 must
/// be counted in the final value.
fn check_writes(variant: &str, port: u16, connections: usize, per_conn: usize) -> WriteCheck {
    let mut c = http::Client::connect(port).expect("connect");
    let cookie = c
        .request("GET", "/new", None)
        .expect("GET /new")
        .set_cookie
        .expect("cookie");
    let start = Instant::now();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(connections));
    let handles: Vec<_> = (0..connections)
        .map(|_| {
            let cookie = cookie.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut client = http::Client::connect(port).expect("connect");
                barrier.wait();
                let mut ok = 0u64;
                for _ in 0..per_conn {
                    match client.request("POST", "/write", Some(&cookie)) {
                        Ok(r) if r.status == 200 => ok += 1,
                        Ok(_) => {}
                        Err(_) => client = http::Client::connect(port).expect("reconnect"),
                    }
                }
                ok
            })
        })
        .collect();
    let ok: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let seconds = start.elapsed().as_secs_f64();
    let read = c.request("GET", "/read", Some(&cookie)).expect("GET /read");
    let final_value: i64 = read.body.trim().parse().unwrap_or(-1);
    WriteCheck {
        variant: variant.into(),
        connections,
        sent: (connections * per_conn) as u64,
        ok,
        final_value,
        lost: ok as i64 - final_value,
        seconds,
    }
}

/// Redis commands the server sends per request, by route (script-internal
/// commands excluded), counted with MONITOR over `n` sequential requests.
fn count_round_trips(port: u16, redis: &Redis, n: usize) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut c = http::Client::connect(port).expect("connect");
    let cookie = c
        .request("GET", "/new", None)
        .expect("GET /new")
        .set_cookie
        .expect("cookie");
    for (route, method) in [
        ("read", "GET"),
        ("write", "POST"),
        ("new", "GET"),
        ("none", "GET"),
    ] {
        let mut monitor = resp::Conn::connect(redis.port, 0).expect("monitor");
        monitor.cmd(&["MONITOR"]).expect("MONITOR");
        for _ in 0..n {
            let cookie = (route != "new").then_some(cookie.as_str());
            let r = c
                .request(method, &format!("/{route}"), cookie)
                .expect("request");
            assert_eq!(r.status, 200, "{method} /{route}: {}", r.body);
        }
        let lines = monitor
            .drain_lines(Duration::from_millis(300))
            .expect("MONITOR lines");
        // `+<time> [<db> <client addr>] "CMD" ...`; script commands show `[<db> lua]`.
        let tag = format!("[{} 127.0.0.1:", redis.db);
        let commands = lines.iter().filter(|l| l.contains(&tag)).count();
        out.insert(route.to_owned(), commands as f64 / n as f64);
    }
    out
}

// ---------------------------------------------------------------- Report

fn fmt(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "-".into()
    }
}

struct Summary {
    /// (variant, route) -> per-round runs
    runs: BTreeMap<(String, String), Vec<Run>>,
}

impl Summary {
    fn cell(&self, variant: &str, route: &str) -> Option<&Vec<Run>> {
        self.runs.get(&(variant.to_owned(), route.to_owned()))
    }

    /// (variant - bare) CPU µs per request, same round, one per round.
    fn diffs(&self, variant: &str, route: &str) -> Vec<f64> {
        self.diffs_of(variant, route, |r| r.cpu_us_per_req)
    }

    /// Per round, `f(variant's run) - f(bare's run)` on `route`.
    fn diffs_of(&self, variant: &str, route: &str, f: impl Fn(&Run) -> f64) -> Vec<f64> {
        let (Some(runs), Some(bare)) = (self.cell(variant, route), self.cell("bare", route)) else {
            return Vec::new();
        };
        runs.iter()
            .filter_map(|r| {
                bare.iter()
                    .find(|b| b.round == r.round)
                    .map(|b| f(r) - f(b))
            })
            .collect()
    }

    /// Median over rounds of (variant - bare) CPU µs per request.
    fn over_bare(&self, variant: &str, route: &str) -> f64 {
        stats::median(&self.diffs(variant, route))
    }

    /// The same for the server's user-space time alone (plus Redis's whole
    /// time, where there is a Redis): the part of the figure that the
    /// loopback's kernel time does not blur.
    fn user_over_bare(&self, variant: &str, route: &str) -> f64 {
        stats::median(&self.diffs_of(variant, route, |r| {
            (r.server_user_s + r.redis_cpu_s) * 1e6 / r.requests.max(1) as f64
        }))
    }

    /// "min..max" of the per-round (variant - bare) values: the noise.
    fn spread(&self, variant: &str, route: &str) -> String {
        let d = self.diffs(variant, route);
        let min = d.iter().copied().fold(f64::INFINITY, f64::min);
        let max = d.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{}..{}", fmt(min, 1), fmt(max, 1))
    }

    fn median_of(&self, variant: &str, route: &str, f: impl Fn(&Run) -> f64) -> f64 {
        self.cell(variant, route)
            .map(|runs| stats::median(&runs.iter().map(f).collect::<Vec<_>>()))
            .unwrap_or(f64::NAN)
    }
}

fn main() {
    let o = parse_opts();
    if let Some(target) = o.profile.clone() {
        profile(&o, &target);
        return;
    }
    let problems = run(o);
    // Only now, with the private Redis and every server dropped, may we exit.
    if !problems.is_empty() {
        eprintln!("harness FAILED:");
        for p in &problems {
            eprintln!("  - {p}");
        }
        std::process::exit(1);
    }
    eprintln!("harness OK: every route answered, no keycard store lost an increment");
}

fn run(o: Opts) -> Vec<String> {
    std::fs::create_dir_all(&o.out).expect("create out dir");
    let started = Instant::now();
    let redis = Redis::start(o.server_cpu);
    let work = std::env::temp_dir().join(format!("keycard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    eprintln!(
        "harness: {} round(s) x {} variant(s) x {} route(s) x {}s, {} connections, Redis at {}{}",
        o.rounds,
        o.variants.len(),
        ROUTES.len(),
        o.seconds,
        o.connections,
        redis.url(),
        if redis.child.is_some() {
            " (private)"
        } else {
            ""
        }
    );

    let mut problems = Vec::new();
    let mut runs: Vec<Run> = Vec::new();
    let mut checked = std::collections::BTreeSet::new();
    for round in 0..o.rounds {
        // Interleave: each round starts at another variant.
        let n = o.variants.len();
        for i in 0..n {
            let variant = &o.variants[(i + round) % n];
            if uses_redis(variant) {
                redis.flush();
            }
            let sqlite = work.join(format!("{variant}-{round}.db"));
            let server = Server::start(&o, variant, &redis, &sqlite);
            if checked.insert(variant.clone()) {
                problems.extend(check_routes(variant, server.port));
            }
            let cookies = work.join(format!("{variant}.cookies"));
            let pool = if variant == "bare" {
                // Same header size as a keycard ID cookie, for a fair baseline.
                vec![format!("__Host-keycard={}", "A".repeat(43)); POOL]
            } else {
                cookie_pool(server.port, POOL)
            };
            std::fs::write(&cookies, pool.join("\n") + "\n").expect("write cookies");
            if !o.smoke {
                // Warm up connections, caches and the allocator.
                wrk(&o, server.port, "GET", "/read", Some(&cookies), 1.0);
            }
            for (route, method) in ROUTES {
                let file = (*route != "new").then_some(cookies.as_path());
                let run = measure(&o, round, variant, &server, &redis, route, method, file);
                eprintln!(
                    "  round {round} {variant:>10} /{route:<5} {:>8.0} req/s  {:>6.1} µs CPU/req  errors {}",
                    run.rps, run.cpu_us_per_req, run.errors
                );
                if run.errors > 0 {
                    problems.push(format!(
                        "{variant} /{route} round {round}: {} errors",
                        run.errors
                    ));
                }
                runs.push(run);
            }
            drop(server);
            let _ = std::fs::remove_file(&sqlite);
            let _ = std::fs::remove_file(sqlite.with_extension("db-wal"));
            let _ = std::fs::remove_file(sqlite.with_extension("db-shm"));
        }
    }

    // Correctness and round trips, outside the timed runs.
    let mut writes = Vec::new();
    let mut trips: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for variant in o.variants.iter().filter(|v| server_side(v)) {
        if uses_redis(variant) {
            redis.flush();
        }
        let sqlite = work.join(format!("{variant}-checks.db"));
        let server = Server::start(&o, variant, &redis, &sqlite);
        let check = check_writes(variant, server.port, 32, o.writes_per_conn);
        eprintln!(
            "  writes {variant:>10}: {} x 32 concurrent, {} ok, final {}, lost {}",
            o.writes_per_conn, check.ok, check.final_value, check.lost
        );
        if variant.starts_with("kc-") && (check.lost != 0 || check.ok != check.sent) {
            problems.push(format!(
                "{variant}: {} of {} writes answered 200, {} increments lost",
                check.ok, check.sent, check.lost
            ));
        }
        writes.push(check);
        if uses_redis(variant) {
            let t = count_round_trips(server.port, &redis, if o.smoke { 20 } else { 100 });
            eprintln!("  redis round trips {variant}: {t:?}");
            trips.insert(variant.clone(), t);
        }
        drop(server);
        let _ = std::fs::remove_file(&sqlite);
    }
    let _ = std::fs::remove_dir_all(&work);

    // ------------------------------------------------------------ tables
    let mut by_cell: BTreeMap<(String, String), Vec<Run>> = BTreeMap::new();
    for run in &runs {
        by_cell
            .entry((run.variant.clone(), run.route.clone()))
            .or_default()
            .push(run.clone());
    }
    let summary = Summary { runs: by_cell };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Medians of {} round(s), {} s per run, {} connections, server pinned to CPU {}, wrk to CPU {}.\n",
        o.rounds, o.seconds, o.connections, o.server_cpu, o.load_cpu
    );
    let _ = writeln!(md, "| route | variant | req/s | CPU µs/req | over bare | rounds' range | server µs/req | of which user | Redis µs/req | user + Redis over bare | p50 ms | p99 ms |");
    let _ = writeln!(
        md,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (route, _) in ROUTES {
        for variant in &o.variants {
            if summary.cell(variant, route).is_none() {
                continue;
            }
            let bare = variant == "bare";
            let _ = writeln!(
                md,
                "| /{route} | {variant} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                fmt(summary.median_of(variant, route, |r| r.rps), 0),
                fmt(summary.median_of(variant, route, |r| r.cpu_us_per_req), 1),
                if bare {
                    "0".into()
                } else {
                    fmt(summary.over_bare(variant, route), 1)
                },
                if bare {
                    "".into()
                } else {
                    summary.spread(variant, route)
                },
                fmt(
                    summary.median_of(variant, route, |r| r.server_cpu_s * 1e6
                        / r.requests.max(1) as f64),
                    1
                ),
                fmt(
                    summary.median_of(variant, route, |r| r.server_user_s * 1e6
                        / r.requests.max(1) as f64),
                    1
                ),
                fmt(
                    summary.median_of(variant, route, |r| r.redis_cpu_s * 1e6
                        / r.requests.max(1) as f64),
                    1
                ),
                if bare {
                    "0".into()
                } else {
                    fmt(summary.user_over_bare(variant, route), 1)
                },
                fmt(summary.median_of(variant, route, |r| r.p50_us) / 1000.0, 2),
                fmt(summary.median_of(variant, route, |r| r.p99_us) / 1000.0, 2),
            );
        }
    }
    let _ = writeln!(
        md,
        "\n| route | keycard | µs over bare | peer | µs over bare | ratio | target ≤ 0.50 | user + Redis ratio |"
    );
    let _ = writeln!(md, "|---|---|---:|---|---:|---:|---|---:|");
    let mut targets = Vec::new();
    for (kc, peer, routes) in PAIRS {
        if !o.variants.iter().any(|v| v == kc) || !o.variants.iter().any(|v| v == peer) {
            continue;
        }
        for route in *routes {
            let a = summary.over_bare(kc, route);
            let b = summary.over_bare(peer, route);
            let ratio = a / b;
            let met = ratio.is_finite() && ratio <= 0.5;
            let user_ratio =
                summary.user_over_bare(kc, route) / summary.user_over_bare(peer, route);
            let _ = writeln!(
                md,
                "| /{route} | {kc} | {} | {peer} | {} | {} | {} | {} |",
                fmt(a, 1),
                fmt(b, 1),
                fmt(ratio, 3),
                if met { "met" } else { "MISSED" },
                fmt(user_ratio, 3),
            );
            targets.push(serde_json::json!({
                "route": route, "keycard": kc, "peer": peer,
                "keycard_us": a, "peer_us": b, "ratio": ratio, "met": met,
                "user_ratio": user_ratio,
            }));
        }
    }
    let mut floors = Vec::new();
    let mut floor_md = String::new();
    for (floor, peer, routes) in FLOORS {
        if !o.variants.iter().any(|v| v == floor) || !o.variants.iter().any(|v| v == peer) {
            continue;
        }
        for route in *routes {
            let f = summary.over_bare(floor, route);
            let p = summary.over_bare(peer, route);
            let ratio = f / p;
            let user_ratio =
                summary.user_over_bare(floor, route) / summary.user_over_bare(peer, route);
            // Per round, floor ÷ the peer's median: the verdict holds only if
            // every round agrees.
            let per_round: Vec<f64> = summary.diffs(floor, route).iter().map(|d| d / p).collect();
            let lowest = per_round.iter().copied().fold(f64::INFINITY, f64::min);
            let highest = per_round.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let verdict = if p.is_nan() || p <= 0.0 || !lowest.is_finite() {
                "no figure"
            } else if lowest > 0.5 {
                "no: every round above"
            } else if highest <= 0.5 {
                "yes"
            } else {
                "undecided: rounds on both sides"
            };
            let _ = writeln!(
                floor_md,
                "| /{route} | {floor} | {} | {peer} | {} | {} | {}..{} | {verdict} | {} |",
                fmt(f, 1),
                fmt(p, 1),
                fmt(ratio, 3),
                fmt(lowest, 2),
                fmt(highest, 2),
                fmt(user_ratio, 3),
            );
            floors.push(serde_json::json!({
                "route": route, "floor": floor, "peer": peer,
                "floor_us": f, "peer_us": p, "ratio": ratio, "per_round_ratios": per_round,
                "verdict": verdict,
                "user_ratio": user_ratio,
            }));
        }
    }
    if !floor_md.is_empty() {
        let _ = writeln!(
            md,
            "\n| route | floor | µs over bare | peer | µs over bare | floor ÷ peer | rounds' range | 0.50 reachable | user + Redis floor ÷ peer |"
        );
        let _ = writeln!(md, "|---|---|---:|---|---:|---:|---:|---|---:|");
        md.push_str(&floor_md);
    }
    if !writes.is_empty() {
        let _ = writeln!(
            md,
            "\n| store | concurrent writers | POST /write sent | 200s | final value | lost |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        for w in &writes {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                w.variant, w.connections, w.sent, w.ok, w.final_value, w.lost
            );
        }
    }
    if !trips.is_empty() {
        let _ = writeln!(
            md,
            "\n| store | Redis commands per /read | /write | /new | /none |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        for (variant, t) in &trips {
            let _ = writeln!(
                md,
                "| {variant} | {} | {} | {} | {} |",
                fmt(t["read"], 2),
                fmt(t["write"], 2),
                fmt(t["new"], 2),
                fmt(t["none"], 2)
            );
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = writeln!(md, "\nHarness wall time: {elapsed:.0} s.");
    println!("{md}");
    std::fs::write(o.out.join("results.md"), &md).expect("write results.md");
    let json = serde_json::json!({
        "rounds": o.rounds, "seconds": o.seconds, "connections": o.connections,
        "runs": runs, "targets": targets, "floors": floors, "writes": writes, "redis_commands_per_request": trips,
        "problems": problems, "wall_seconds": elapsed,
    });
    std::fs::write(
        o.out.join("results.json"),
        serde_json::to_string_pretty(&json).expect("json"),
    )
    .expect("write results.json");
    std::io::stdout().flush().ok();
    problems
}

/// `perf record` of one variant's server while wrk loads one route; writes
/// `<out>/perf-<variant>-<route>.data` and prints the top of `perf report`.
fn profile(o: &Opts, target: &str) {
    let (variant, route) = target.split_once('/').expect("--profile VARIANT/ROUTE");
    std::fs::create_dir_all(&o.out).expect("create out dir");
    let method = ROUTES
        .iter()
        .find(|(r, _)| *r == route)
        .map(|(_, m)| *m)
        .expect("route: read, write or new");
    let redis = Redis::start(o.server_cpu);
    redis.flush();
    let work = std::env::temp_dir().join(format!("keycard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let server = Server::start(o, variant, &redis, &work.join("profile.db"));
    let cookies = work.join("cookies");
    let pool = if variant == "bare" {
        vec![format!("__Host-keycard={}", "A".repeat(43)); POOL]
    } else {
        cookie_pool(server.port, POOL)
    };
    std::fs::write(&cookies, pool.join("\n") + "\n").expect("cookies");
    wrk(o, server.port, "GET", "/read", Some(&cookies), 1.0);
    let data = o.out.join(format!("perf-{variant}-{route}.data"));
    let mut perf = Command::new("perf")
        .args([
            "record",
            "-F",
            "1999",
            "-g",
            "--call-graph",
            "dwarf,32768",
            "-o",
        ])
        .arg(&data)
        .arg("-p")
        .arg(if uses_redis(variant) && redis.pid != 0 {
            format!("{},{}", server.pid, redis.pid)
        } else {
            server.pid.to_string()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("perf (apt-get install linux-perf)");
    std::thread::sleep(Duration::from_millis(300));
    let file = (route != "new").then_some(cookies.as_path());
    let result = wrk(
        o,
        server.port,
        method,
        &format!("/{route}"),
        file,
        o.seconds,
    );
    // SIGINT makes perf write its file and stop.
    let _ = Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status();
    let _ = perf.wait();
    eprintln!(
        "profiled {variant} /{route}: {} requests; data in {}",
        result["requests"],
        data.display()
    );
    std::fs::write(
        data.with_extension("requests"),
        result["requests"].to_string(),
    )
    .expect("write");
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
}
