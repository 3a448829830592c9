//! criterion micro-benchmarks of keycard's per-request building blocks.
//!
//! `cargo bench --bench micro` (from bench/). Groups: ID generation, sealing
//! and opening a 100-byte and a 3 KB record, applying a one-key change, CSRF
//! token mask and verify, Flask cookie decode.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keycard::codec::flask::{FlaskCodec, FlaskSession, FlaskValue};
use keycard::{
    Change, CookieCodec, KeyRing, MemoryStore, Record, SealedCodec, Session, SessionId,
    SessionLayer, SessionStore, Update,
};
use serde_json::Value;
use std::sync::{Arc, Mutex};

const COOKIE: &str = "__Host-keycard";

/// A record whose `encode()` is about `size` bytes.
fn record_of(size: usize) -> Record {
    let mut r = Record::new(1_700_000_000_000, 1_800_000, 28_800_000);
    r.data.insert("n".into(), Value::from(41));
    r.data.insert("theme".into(), Value::from("dark"));
    let base = r.encode().len();
    if size > base + 8 {
        r.data
            .insert("blob".into(), Value::from("x".repeat(size - base - 10)));
    }
    r
}

/// What the cookie backend seals: format byte, the 32-byte ID, the record.
fn cookie_payload(record: &Record) -> Vec<u8> {
    let id = SessionId::generate().unwrap();
    let mut out = vec![1u8];
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&record.encode());
    out
}

fn ids(c: &mut Criterion) {
    let mut g = c.benchmark_group("id");
    g.bench_function("generate", |b| b.iter(|| SessionId::generate().unwrap()));
    g.bench_function("generate+encode+key", |b| {
        b.iter(|| {
            let id = SessionId::generate().unwrap();
            (id.to_string(), id.key())
        })
    });
    let text = SessionId::generate().unwrap().to_string();
    g.bench_function("parse+key", |b| {
        b.iter(|| SessionId::parse(black_box(&text)).unwrap().key())
    });
    g.finish();
}

fn sealed(c: &mut Criterion) {
    let ring = KeyRing::generate().unwrap();
    let codec = SealedCodec::new(&ring, "session");
    let mut g = c.benchmark_group("sealed");
    // "3KB": 2,850 bytes of record, the largest whose sealed cookie (with the
    // ID, name and attributes) stays under the 4,096-byte limit.
    for (label, size) in [("100B", 100), ("3KB", 2850)] {
        let record = record_of(size);
        let payload = cookie_payload(&record);
        g.throughput(Throughput::Bytes(payload.len() as u64));
        g.bench_with_input(BenchmarkId::new("seal", label), &payload, |b, p| {
            b.iter(|| codec.seal(COOKIE, black_box(p)).unwrap())
        });
        let value = codec.seal(COOKIE, &payload).unwrap();
        g.bench_with_input(BenchmarkId::new("open", label), &value, |b, v| {
            b.iter(|| codec.open(COOKIE, black_box(v)).unwrap())
        });
        // What a request with a cookie session does around the cipher.
        g.bench_with_input(BenchmarkId::new("encode+seal", label), &record, |b, r| {
            b.iter(|| codec.seal(COOKIE, &cookie_payload(black_box(r))).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("open+decode", label), &value, |b, v| {
            b.iter(|| {
                let opened = codec.open(COOKIE, black_box(v)).unwrap();
                Record::decode(&opened.payload[33..]).unwrap()
            })
        });
    }
    g.finish();
}

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    let update = Update {
        changes: vec![Change::Set {
            key: "theme".into(),
            value: Value::from("light"),
        }],
        user_id: None,
        client: None,
        last_seen: 1_700_000_001_000,
        idle_deadline: 1_700_001_801_000,
        absolute_deadline: 1_700_028_800_000,
    };
    let mut record = record_of(100);
    g.bench_function("record/one-key", |b| {
        b.iter(|| record.apply(black_box(&update)))
    });
    let increment = Update {
        changes: vec![Change::Increment {
            key: "n".into(),
            by: 1,
        }],
        ..update.clone()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = MemoryStore::new();
    let key = SessionId::generate().unwrap().key();
    let mut live = record_of(100);
    let now = keycard::now_millis();
    live.idle_deadline = now + 3_600_000;
    live.absolute_deadline = now + 3_600_000;
    rt.block_on(store.create(&key, &live)).unwrap();
    let increment = Update {
        idle_deadline: now + 3_600_000,
        absolute_deadline: now + 3_600_000,
        ..increment
    };
    g.bench_function("memory-store/one-key-increment", |b| {
        b.iter(|| {
            rt.block_on(store.apply(&key, black_box(&increment)))
                .unwrap()
        })
    });
    g.bench_function("memory-store/load", |b| {
        b.iter(|| rt.block_on(store.load(black_box(&key))).unwrap())
    });
    g.finish();
}

/// A live session handle with a CSRF secret, taken out of a request that
/// went through the layer.
fn session_with_csrf_secret(rt: &tokio::runtime::Runtime) -> Session {
    use tower::{Layer, Service};
    let slot: Arc<Mutex<Option<Session>>> = Arc::default();
    let inner_slot = slot.clone();
    let handler = tower::service_fn(move |req: http::Request<String>| {
        let slot = inner_slot.clone();
        async move {
            let session = req.extensions().get::<Session>().cloned().unwrap();
            keycard::csrf::token(&session).await.unwrap();
            *slot.lock().unwrap() = Some(session);
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }
    });
    let mut service = SessionLayer::new(MemoryStore::new()).layer(handler);
    let response = rt
        .block_on(service.call(http::Request::new(String::new())))
        .unwrap();
    assert_eq!(response.status(), 200);
    let session = slot.lock().unwrap().take().unwrap();
    session
}

fn csrf(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let session = session_with_csrf_secret(&rt);
    let token = rt.block_on(keycard::csrf::token(&session)).unwrap();
    assert!(rt
        .block_on(keycard::csrf::verify(&session, &token))
        .unwrap());
    let mut g = c.benchmark_group("csrf");
    g.bench_function("mask (token)", |b| {
        b.iter(|| {
            rt.block_on(keycard::csrf::token(black_box(&session)))
                .unwrap()
        })
    });
    g.bench_function("verify", |b| {
        b.iter(|| {
            rt.block_on(keycard::csrf::verify(
                black_box(&session),
                black_box(&token),
            ))
            .unwrap()
        })
    });
    g.finish();
}

fn flask(c: &mut Criterion) {
    let codec = FlaskCodec::new("dev secret key, as in app.config['SECRET_KEY']");
    let mut session = FlaskSession::new();
    session.insert("user_id", 42);
    session.insert("csrf_token", "3f2b9c0e8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c");
    session.insert(
        "cart",
        FlaskValue::Tuple(vec!["apple".into(), "pear".into()]),
    );
    let cookie = codec.encode(&session).unwrap();
    let mut g = c.benchmark_group("flask");
    g.bench_function("decode", |b| {
        b.iter(|| codec.decode(black_box(&cookie)).unwrap())
    });
    g.bench_function("encode", |b| {
        b.iter(|| codec.encode(black_box(&session)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, ids, sealed, apply, csrf, flask);
criterion_main!(benches);
