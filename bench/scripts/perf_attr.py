#!/usr/bin/env python3
"""Attributes a `perf record -g` profile of the bench server to categories.

    perf_attr.py PERF_DATA REQUESTS [FREQ_HZ] [label=regex ...]

For each category, the share of samples with a frame matching its regex
(inclusive, like perf's "children"), and the CPU µs per request that share is
(samples / FREQ_HZ / REQUESTS). Categories may overlap; "total" is every sample.
"""
import re
import subprocess
import sys

DEFAULT = [
    ("keycard layer (all)", r"keycard::service::SessionService"),
    ("session load", r"keycard::session::Session::load\b|Session::loaded"),
    ("session commit", r"keycard::session::Session::commit"),
    ("store load", r"SessionStore.*>::load|SessionStore for .*load"),
    ("store apply", r"SessionStore.*>::apply|SessionStore for .*apply"),
    ("store create", r"SessionStore.*>::create|SessionStore for .*create"),
    ("redis-rs reply parsing", r"redis::parser"),
    ("redis-rs send", r"PipelineSink.*poll_flush|req_packed_command"),
    ("fred", r"fred::"),
    ("decode_record / record JSON", r"decode_record|Record::decode|Record::encode|record_fields"),
    ("serde_json", r"serde_json::"),
    ("tokio timers", r"tokio::time::|tokio::runtime::time"),
    ("SHA-256", r"sha2::"),
    ("AES-GCM", r"aes_gcm|aes::|ghash|polyval"),
    ("base64", r"base64::"),
    ("getrandom", r"getrandom"),
    ("Set-Cookie / cookie", r"set_cookie|cookie::|CookieJar|PrivateCookieJar"),
    ("malloc/free", r"^(malloc|free|_int_malloc|_int_free|__GI___libc_malloc|__GI___libc_free|cfree|realloc|malloc_consolidate|unlink_chunk)"),
    ("tower-sessions", r"tower_sessions"),
    ("MemoryStore", r"keycard::store::memory"),
    ("BTreeMap/BTreeSet", r"alloc::collections::btree"),
    ("hashbrown", r"hashbrown::"),
    ("client_details", r"client_details|ClientAddrResolver"),
    ("revocation check", r"is_revoked|revocation_key|SessionKey::derive"),
    ("syscalls", r"entry_SYSCALL_64"),
]


COMM = None  # only samples of this command (e.g. redis-server), with --comm NAME


def samples(path):
    out = subprocess.run(
        ["perf", "script", "-i", path, "-F", "comm,ip,sym"],
        capture_output=True, text=True, check=True,
    ).stdout
    cur = None
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():  # a sample's header line
            if cur is not None:
                yield cur
            cur = [] if COMM is None or line.split()[0] == COMM else None
            continue
        if cur is None:
            continue
        parts = line.strip().split(None, 1)
        cur.append(parts[1] if len(parts) > 1 else parts[0])
    if cur is not None:
        yield cur


def main():
    global COMM
    if "--comm" in sys.argv:
        i = sys.argv.index("--comm")
        COMM = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    path, requests = sys.argv[1], int(sys.argv[2])
    freq = float(sys.argv[3]) if len(sys.argv) > 3 and "=" not in sys.argv[3] else 1999.0
    cats = [tuple(a.split("=", 1)) for a in sys.argv[3:] if "=" in a] or DEFAULT
    regs = [(name, re.compile(rx)) for name, rx in cats]
    counts = {name: 0 for name, _ in cats}
    total = 0
    for frames in samples(path):
        total += 1
        for name, rx in regs:
            if any(rx.search(f) for f in frames):
                counts[name] += 1
    us = lambda n: n / freq / requests * 1e6
    print(f"{path}: {total} samples, {requests} requests, {us(total):.2f} µs CPU/request sampled")
    for name, _ in cats:
        n = counts[name]
        if n:
            print(f"  {name:<32} {100.0 * n / total:5.1f}%  {us(n):6.2f} µs/req")


main()
