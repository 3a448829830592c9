//! Scale measurements: memory per session, bounded memory under a stream of
//! new sessions, sweep time, and SQLite / Redis load latency at 1M sessions.
//!
//! ```text
//! scale [--sessions N] [--quick] [--only memory,bounded,sweep,sqlite,redis] [--out DIR]
//! ```
//!
//! Heap figures come from a counting global allocator (bytes the program asked
//! for and has not freed), RSS from `/proc/self/statm`.

use keycard::{MemoryStore, Record, SessionId, SessionKey, SessionStore, UnixMillis};
use keycard_bench::redis_instance::Redis;
use keycard_bench::stats;
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<usize>().ok())
        })
        .unwrap_or(0)
        * 4096
}

fn now() -> UnixMillis {
    keycard::now_millis()
}

fn fresh_key() -> SessionKey {
    SessionId::generate().expect("random").key()
}

/// A session as the benchmark server's /new makes it: `n = 0`, or `n` plus a
/// string that brings the JSON payload to about `payload` bytes.
fn record(at: UnixMillis, lifetime_ms: i64, payload: usize) -> Record {
    let mut r = Record::new(at, lifetime_ms, lifetime_ms);
    r.data.insert("n".into(), Value::from(0));
    if payload > 16 {
        r.data
            .insert("s".into(), Value::from("x".repeat(payload - 16)));
    }
    r
}

fn payload_len(r: &Record) -> usize {
    serde_json::to_vec(&r.data).expect("json").len()
}

struct Out {
    md: String,
    json: serde_json::Map<String, Value>,
}

// ------------------------------------------------------------------ memory

async fn memory(n: usize, out: &mut Out) {
    let _ = writeln!(
        out.md,
        "\n### MemoryStore: bytes per session at {n} sessions\n"
    );
    let _ = writeln!(out.md, "| payload (JSON bytes) | heap bytes/session | beyond payload | RSS bytes/session | target ≤ 200 beyond payload |");
    let _ = writeln!(out.md, "|---:|---:|---:|---:|---|");
    let mut rows = Vec::new();
    for payload in [0usize, 100] {
        let t = now();
        let keys: Vec<SessionKey> = (0..n).map(|_| fresh_key()).collect();
        let (heap0, rss0) = (live(), rss());
        let store = MemoryStore::new();
        let plen = payload_len(&record(t, 3_600_000, payload));
        for key in &keys {
            store
                .create(key, &record(t, 3_600_000, payload))
                .await
                .expect("create");
        }
        let (heap1, rss1) = (live(), rss());
        let per = (heap1 - heap0) as f64 / n as f64;
        // Only the first store's RSS growth means anything: later ones reuse
        // the pages the first one freed.
        let per_rss = if payload == 0 {
            rss1.saturating_sub(rss0) as f64 / n as f64
        } else {
            f64::NAN
        };
        let beyond = per - plen as f64;
        let _ = writeln!(
            out.md,
            "| {plen} | {per:.0} | {beyond:.0} | {} | {} |",
            if per_rss.is_finite() {
                format!("{per_rss:.0}")
            } else {
                "-".into()
            },
            if beyond <= 200.0 { "met" } else { "MISSED" }
        );
        rows.push(json!({"payload": plen, "heap_per_session": per, "beyond_payload": beyond, "rss_per_session": per_rss}));
        drop(store);
    }
    out.json
        .insert("memory".into(), json!({"sessions": n, "rows": rows}));
}

async fn bounded(n: usize, out: &mut Out) {
    // A stream of new sessions that each live 200 ms, as fast as one thread
    // can create them; nothing but the writes themselves evicts.
    let lifetime = 200;
    let store = MemoryStore::new();
    let heap0 = live();
    let start = Instant::now();
    let mut peak_len = 0;
    let mut peak_heap = 0;
    let mut max_live = 0usize;
    let mut recent: std::collections::VecDeque<(Instant, usize)> = Default::default();
    for i in 0..n {
        let r = record(now(), lifetime, 0);
        store.create(&fresh_key(), &r).await.expect("create");
        if i % 5_000 == 0 {
            let len = store.len();
            peak_len = peak_len.max(len);
            peak_heap = peak_heap.max(live() - heap0);
            // Sessions created in the last `lifetime` ms: those still unexpired.
            let now_i = Instant::now();
            recent.push_back((now_i, i));
            while recent.front().is_some_and(|(t, _)| {
                now_i.duration_since(*t) > Duration::from_millis(lifetime as u64)
            }) {
                recent.pop_front();
            }
            let unexpired = i - recent.front().map_or(0, |(_, j)| *j);
            max_live = max_live.max(unexpired);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rate = n as f64 / elapsed;
    let final_len = store.len();
    // Bounded: what is held never exceeds the unexpired set by more than a
    // sampling window plus a little per shard.
    let bound = max_live + 5_000 + 16 * 64;
    let met = peak_len <= bound;
    let _ = writeln!(
        out.md,
        "\n### MemoryStore under a stream of new sessions\n\n\
         {n} sessions created at {rate:.0}/s, each living {lifetime} ms: at most {max_live} unexpired at once \
         (sampled every 5,000); the store held at most **{peak_len}** records (ends at {final_len}), \
         peak heap {:.1} MB. Bounded (peak ≤ unexpired + sampling window): **{}**.",
        peak_heap as f64 / 1e6,
        if met { "met" } else { "MISSED" }
    );
    out.json.insert(
        "bounded".into(),
        json!({"created": n, "rate_per_s": rate, "lifetime_ms": lifetime, "max_unexpired": max_live,
               "peak_len": peak_len, "final_len": final_len, "peak_heap_bytes": peak_heap, "met": met}),
    );
}

// ------------------------------------------------------------------ sweep

/// A store of `total` sessions, `expired` of which are expired at the
/// returned instant (their deadline is 60 s from now, the rest's an hour).
async fn populate(store: &dyn SessionStore, total: usize, expired: usize) -> UnixMillis {
    let t = now();
    let every = (total / expired.max(1)).max(1);
    for i in 0..total {
        let lifetime = if i % every == 0 && i / every < expired {
            60_000
        } else {
            3_600_000
        };
        store
            .create(&fresh_key(), &record(t, lifetime, 0))
            .await
            .expect("create");
    }
    t + 120_000
}

async fn sweep_all(store: &dyn SessionStore, at: UnixMillis, batch: usize) -> (u64, f64) {
    let start = Instant::now();
    let mut swept = 0;
    loop {
        let n = store.sweep(at, batch).await.expect("sweep");
        swept += n;
        if (n as usize) < batch {
            break;
        }
    }
    (swept, start.elapsed().as_secs_f64() * 1000.0)
}

async fn sweep(n: usize, out: &mut Out, sqlite_dir: &std::path::Path, sqlite_n: usize) {
    let _ = writeln!(out.md, "\n### Sweep time (expired sessions removed)\n");
    let _ = writeln!(
        out.md,
        "| store | sessions | expired | swept | time ms | µs per swept |"
    );
    let _ = writeln!(out.md, "|---|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    let cases = [(n, n / 10), (n, n / 100), (n / 10, n / 100)];
    for (total, expired) in cases {
        let store = MemoryStore::new();
        let at = populate(&store, total, expired).await;
        let (swept, ms) = sweep_all(&store, at, usize::MAX).await;
        let _ = writeln!(
            out.md,
            "| memory | {total} | {expired} | {swept} | {ms:.1} | {:.2} |",
            ms * 1000.0 / swept.max(1) as f64
        );
        rows.push(json!({"store": "memory", "total": total, "expired": expired, "swept": swept, "ms": ms}));
    }
    for (total, expired) in [(sqlite_n, sqlite_n / 10), (sqlite_n / 10, sqlite_n / 100)] {
        let path = sqlite_dir.join(format!("sweep-{total}.db"));
        remove_db(&path);
        let store = keycard_sqlite::SqliteStore::open(&path)
            .await
            .expect("open");
        let at = populate_sqlite(&store, total, expired).await;
        let (swept, ms) = sweep_all(&store, at, 500).await;
        let _ = writeln!(
            out.md,
            "| sqlite (batches of 500) | {total} | {expired} | {swept} | {ms:.1} | {:.2} |",
            ms * 1000.0 / swept.max(1) as f64
        );
        rows.push(json!({"store": "sqlite", "total": total, "expired": expired, "swept": swept, "ms": ms}));
        drop(store);
        remove_db(&path);
    }
    out.json.insert("sweep".into(), Value::from(rows));
}

fn remove_db(path: &std::path::Path) {
    for ext in ["db", "db-wal", "db-shm"] {
        let _ = std::fs::remove_file(path.with_extension(ext));
    }
}

/// Fills a SQLite store through its own API, 64 creates in flight at a time
/// (they queue on its one writer connection).
async fn populate_sqlite(
    store: &keycard_sqlite::SqliteStore,
    total: usize,
    expired: usize,
) -> UnixMillis {
    let t = now();
    let every = (total / expired.max(1)).max(1);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..total {
        let lifetime = if i % every == 0 && i / every < expired {
            60_000
        } else {
            3_600_000
        };
        let store = store.clone();
        set.spawn(async move {
            store
                .create(&fresh_key(), &record(t, lifetime, 0))
                .await
                .map_err(|e| e.to_string())
        });
        if set.len() >= 64 {
            set.join_next()
                .await
                .expect("task")
                .expect("join")
                .expect("create");
        }
    }
    while let Some(r) = set.join_next().await {
        r.expect("join").expect("create");
    }
    t + 120_000
}

// ------------------------------------------------------------------ 1M load latency

async fn latency(store: Arc<dyn SessionStore>, keys: &[SessionKey], samples: usize) -> Value {
    let mut load = Vec::with_capacity(samples);
    let mut apply = Vec::with_capacity(samples);
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..samples {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let key = keys[(rng % keys.len() as u64) as usize];
        let start = Instant::now();
        let got = store.load(&key).await.expect("load");
        load.push(start.elapsed().as_secs_f64() * 1e6);
        assert!(got.is_some(), "a created session was not found");
        let t = now();
        let update = keycard::Update {
            changes: vec![keycard::Change::Increment {
                key: "n".into(),
                by: 1,
            }],
            user_id: None,
            client: None,
            last_seen: t,
            idle_deadline: t + 3_600_000,
            absolute_deadline: got.map_or(t, |r| r.absolute_deadline),
        };
        let start = Instant::now();
        store.apply(&key, &update).await.expect("apply");
        apply.push(start.elapsed().as_secs_f64() * 1e6);
    }
    load.sort_by(f64::total_cmp);
    apply.sort_by(f64::total_cmp);
    json!({
        "load_p50_us": stats::quantile(&load, 0.5), "load_p99_us": stats::quantile(&load, 0.99),
        "apply_p50_us": stats::quantile(&apply, 0.5), "apply_p99_us": stats::quantile(&apply, 0.99),
        "samples": samples,
    })
}

async fn fill(store: Arc<dyn SessionStore>, n: usize, in_flight: usize) -> (Vec<SessionKey>, f64) {
    let t = now();
    let keys: Vec<SessionKey> = (0..n).map(|_| fresh_key()).collect();
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for &key in &keys {
        let store = store.clone();
        set.spawn(async move {
            store
                .create(&key, &record(t, 3_600_000, 0))
                .await
                .map_err(|e| e.to_string())
        });
        if set.len() >= in_flight {
            set.join_next()
                .await
                .expect("task")
                .expect("join")
                .expect("create");
        }
    }
    while let Some(r) = set.join_next().await {
        r.expect("join").expect("create");
    }
    (keys, n as f64 / start.elapsed().as_secs_f64())
}

fn latency_row(out: &mut Out, name: &str, n: usize, rate: f64, lat: &Value, extra: &str) {
    let f = |k: &str| lat[k].as_f64().unwrap_or(f64::NAN);
    let _ = writeln!(
        out.md,
        "| {name} | {n} | {rate:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {extra} |",
        f("load_p50_us"),
        f("load_p99_us"),
        f("apply_p50_us"),
        f("apply_p99_us")
    );
}

// ------------------------------------------------------------------ main

fn main() {
    let mut sessions = 1_000_000usize;
    let mut quick = false;
    let mut only: Option<Vec<String>> = None;
    let mut out_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sessions" => {
                sessions = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--sessions N")
            }
            "--quick" => {
                quick = true;
                sessions = 20_000;
            }
            "--only" => {
                only = args
                    .next()
                    .map(|v| v.split(',').map(str::to_owned).collect())
            }
            "--out" => out_dir = args.next().expect("--out DIR").into(),
            other => panic!("unknown argument {other}"),
        }
    }
    let want = |what: &str| only.as_ref().is_none_or(|o| o.iter().any(|w| w == what));
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let work = std::env::temp_dir().join(format!("keycard-scale-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut out = Out {
        md: String::new(),
        json: Default::default(),
    };
    let started = Instant::now();
    runtime.block_on(async {
        if want("memory") {
            memory(sessions, &mut out).await;
            eprintln!("scale: memory done ({:.0} s)", started.elapsed().as_secs_f64());
        }
        if want("bounded") {
            bounded(if quick { 100_000 } else { 2_000_000 }, &mut out).await;
            eprintln!("scale: bounded done ({:.0} s)", started.elapsed().as_secs_f64());
        }
        if want("sweep") {
            sweep(sessions, &mut out, &work, sessions).await;
            eprintln!("scale: sweep done ({:.0} s)", started.elapsed().as_secs_f64());
        }
        let samples = if quick { 2_000 } else { 20_000 };
        if want("sqlite") || want("redis") {
            let _ = writeln!(out.md, "\n### Stores at {sessions} sessions (sequential calls from one task)\n");
            let _ = writeln!(out.md, "| store | sessions | fill rate /s | load p50 µs | load p99 µs | apply p50 µs | apply p99 µs | note |");
            let _ = writeln!(out.md, "|---|---:|---:|---:|---:|---:|---:|---|");
        }
        if want("sqlite") {
            let path = work.join("scale.db");
            remove_db(&path);
            let store = keycard_sqlite::SqliteStore::open(&path).await.expect("open");
            let store: Arc<dyn SessionStore> = Arc::new(store);
            let (keys, rate) = fill(store.clone(), sessions, 64).await;
            let lat = latency(store.clone(), &keys, samples).await;
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
                + std::fs::metadata(path.with_extension("db-wal")).map(|m| m.len()).unwrap_or(0);
            latency_row(&mut out, "sqlite", sessions, rate, &lat, &format!("file {:.0} MB", size as f64 / 1e6));
            out.json.insert("sqlite".into(), json!({"sessions": sessions, "fill_per_s": rate, "latency": lat, "file_bytes": size}));
            drop(store);
            remove_db(&path);
            eprintln!("scale: sqlite done ({:.0} s)", started.elapsed().as_secs_f64());
        }
        if want("redis") {
            let redis = Redis::start(1);
            redis.flush();
            let store = keycard_redis::RedisStore::builder(redis.url())
                .prefix("kcscale")
                .timeout(Duration::from_secs(10))
                .connect()
                .await
                .expect("connect");
            let store: Arc<dyn SessionStore> = Arc::new(store);
            let (keys, rate) = fill(store.clone(), sessions, 256).await;
            let lat = latency(store.clone(), &keys, samples).await;
            let used = keycard_bench::resp::Conn::connect(redis.port, redis.db)
                .and_then(|mut c| c.info_field("memory", "used_memory"))
                .ok()
                .flatten()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN);
            latency_row(&mut out, "redis", sessions, rate, &lat, &format!("Redis used_memory {:.0} MB", used / 1e6));
            out.json.insert("redis".into(), json!({"sessions": sessions, "fill_per_s": rate, "latency": lat, "used_memory": used}));
            redis.flush();
            eprintln!("scale: redis done ({:.0} s)", started.elapsed().as_secs_f64());
        }
    });
    let _ = std::fs::remove_dir_all(&work);
    let _ = writeln!(
        out.md,
        "\nScale wall time: {:.0} s.",
        started.elapsed().as_secs_f64()
    );
    println!("{}", out.md);
    std::fs::write(out_dir.join("scale.md"), &out.md).expect("write scale.md");
    std::fs::write(
        out_dir.join("scale.json"),
        serde_json::to_string_pretty(&Value::Object(out.json)).expect("json"),
    )
    .expect("write scale.json");
}
