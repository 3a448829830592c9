#!/usr/bin/env python3
"""Real Flask on the other side of keycard's Flask codec tests.

Every cookie is made and read by a real Flask app (its default
SecureCookieSessionInterface, through the test client), never by re-implementing
itsdangerous. Sessions go in and come out as Flask's own tagged JSON
(flask.json.tag), so tuples, bytes, UUIDs, datetimes and Markup survive the trip.

Usage:
  flask_interop.py sign   --secret S [--timestamp T] [--lifetime SECS]  < session.json
      prints the value of the `session` cookie Flask sets for that session
  flask_interop.py verify --secret S [--fallback F]... [--lifetime SECS] [--now T] COOKIE
      prints {"valid": bool, "error": str|null, "session": tagged JSON,
              "types": {key: Python type name}}
  flask_interop.py batch  < jobs.json
      jobs: [{"op": "sign"|"verify", "secret": ..., "fallbacks": [...],
              "timestamp"/"now": int|null, "lifetime": int|null,
              "session": tagged JSON | "cookie": str}, ...]
      prints one result per job (a cookie string, or the verify object)
  flask_interop.py vectors [--timestamp T]
      prints the fixed test vectors (tests/data/flask/vectors.json)
"""

import argparse
import json
import sys
from datetime import timedelta

import itsdangerous.timed
from flask import Flask, session
from flask.json.tag import TaggedJSONSerializer

_real_get_timestamp = itsdangerous.timed.TimestampSigner.get_timestamp
TAGGER = TaggedJSONSerializer()


def at_time(timestamp):
    """Make itsdangerous sign (and check ages) as if it were `timestamp`."""
    if timestamp is None:
        itsdangerous.timed.TimestampSigner.get_timestamp = _real_get_timestamp
    else:
        itsdangerous.timed.TimestampSigner.get_timestamp = lambda self: int(timestamp)


def make_app(secret, fallbacks=(), lifetime=None):
    app = Flask("keycard_interop")
    app.secret_key = secret
    app.config["SECRET_KEY_FALLBACKS"] = list(fallbacks)
    if lifetime is not None:
        app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=lifetime)
    state = {}

    @app.post("/set")
    def set_session():
        session.clear()
        session.update(state["data"])
        return ""

    @app.get("/get")
    def get_session():
        state["data"] = dict(session)
        return ""

    return app, state


def sign(secret, tagged_session, timestamp=None, lifetime=None):
    """The cookie Flask sets for `tagged_session` (Flask's tagged JSON)."""
    at_time(timestamp)
    try:
        app, state = make_app(secret, lifetime=lifetime)
        state["data"] = TAGGER.loads(json.dumps(tagged_session))
        with app.test_client() as client:
            client.post("/set")
            cookie = client.get_cookie("session")
            if cookie is None:
                raise SystemExit("Flask set no session cookie (empty session?)")
            return cookie.value
    finally:
        at_time(None)


def verify(secret, cookie, fallbacks=(), lifetime=None, now=None):
    """What Flask reads from `cookie`, and why it refuses it if it does."""
    at_time(now)
    try:
        app, state = make_app(secret, fallbacks, lifetime)
        # The reason, from the very serializer Flask's session interface uses.
        serializer = app.session_interface.get_signing_serializer(app)
        max_age = int(app.permanent_session_lifetime.total_seconds())
        error = None
        try:
            serializer.loads(cookie, max_age=max_age)
        except Exception as exc:  # BadSignature, SignatureExpired, BadPayload...
            error = type(exc).__name__
        # The session, as a Flask view sees it.
        with app.test_client() as client:
            client.set_cookie("session", cookie)
            client.get("/get")
        data = state["data"]
        return {
            "valid": error is None,
            "error": error,
            "session": json.loads(TAGGER.dumps(data)),
            "types": {key: type(value).__name__ for key, value in data.items()},
        }
    finally:
        at_time(None)


def run_job(job):
    if job["op"] == "sign":
        # "session_json": the session as JSON text, for values a JSON document
        # made by serde_json cannot carry (integers beyond 64 bits).
        session = json.loads(job["session_json"]) if "session_json" in job else job["session"]
        return sign(job["secret"], session, job.get("timestamp"), job.get("lifetime"))
    if job["op"] == "verify":
        return verify(
            job["secret"],
            job["cookie"],
            job.get("fallbacks") or (),
            job.get("lifetime"),
            job.get("now"),
        )
    raise SystemExit(f"unknown op {job['op']!r}")


VECTOR_SECRET = "keycard-flask-vector-secret"
VECTOR_OLD_SECRET = "keycard-flask-vector-old-secret"
VECTOR_SESSIONS = [
    ("simple", VECTOR_SECRET, {"user_id": 42, "name": "ada"}),
    ("permanent", VECTOR_SECRET, {"_permanent": True, "user_id": 1}),
    ("flask_login", VECTOR_SECRET, {
        "_fresh": True,
        "_id": "f00dfeed" * 16,
        "_user_id": "7",
        "csrf_token": "0123456789abcdef0123456789abcdef01234567",
    }),
    ("json_types", VECTOR_SECRET, {
        "f": 1.5, "neg": -3, "none": None, "no": False,
        "nested": {"a": [1, {"b": "c"}]}, "empty": {}, "list": [],
    }),
    ("non_ascii", VECTOR_SECRET, {"name": "Zo\u00eb \U0001F600", "ctl": "a\nb\u007f"}),
    ("tagged", VECTOR_SECRET, {
        "tuple": {" t": [1, "two", {" t": []}]},
        "bytes": {" b": "AAH/"},
        "uuid": {" u": "12345678123456781234567812345678"},
        "when": {" d": "Wed, 21 Oct 2015 07:28:00 GMT"},
        "markup": {" m": "<b>bold</b> &amp;"},
        "list_of_tagged": [{" b": "aGk="}, {" t": [{" u": "0" * 32}]}],
    }),
    ("escaped_dict", VECTOR_SECRET, {"looks_tagged": {" di": {" t__": [1, 2]}}}),
    ("escaped_top_level", VECTOR_SECRET, {" di": {" b__": "not bytes"}}),
    ("compressed", VECTOR_SECRET, {"cart": [{"sku": f"item-{i % 7}", "qty": 1} for i in range(60)]}),
    ("compressed_tagged", VECTOR_SECRET, {
        "history": {" t": [{" d": "Sun, 06 Nov 1994 08:49:37 GMT"}] * 40},
        "blob": {" b": "QUFBQUFBQUFB" * 20},
    }),
    ("fallback", VECTOR_OLD_SECRET, {"user_id": 9}),
]


def vectors(timestamp):
    out = []
    for name, secret, tagged in VECTOR_SESSIONS:
        cookie = sign(secret, tagged, timestamp)
        # Read back by Flask itself: what a Flask view would see.
        read = verify(VECTOR_SECRET, cookie, [VECTOR_OLD_SECRET], now=timestamp)
        assert read["valid"], (name, read)
        out.append({
            "name": name,
            "secret": secret,
            "timestamp": timestamp,
            "compressed": cookie.startswith("."),
            "cookie": cookie,
            "session": read["session"],
            "types": read["types"],
        })
    return {
        "generator": "crates/keycard/tests/flask/flask_interop.py vectors",
        "flask": __import__("importlib.metadata").metadata.version("flask"),
        "itsdangerous": __import__("importlib.metadata").metadata.version("itsdangerous"),
        "secret": VECTOR_SECRET,
        "fallbacks": [VECTOR_OLD_SECRET],
        "vectors": out,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_sign = sub.add_parser("sign")
    p_sign.add_argument("--secret", required=True)
    p_sign.add_argument("--timestamp", type=int)
    p_sign.add_argument("--lifetime", type=int)
    p_verify = sub.add_parser("verify")
    p_verify.add_argument("--secret", required=True)
    p_verify.add_argument("--fallback", action="append", default=[])
    p_verify.add_argument("--lifetime", type=int)
    p_verify.add_argument("--now", type=int)
    p_verify.add_argument("cookie")
    sub.add_parser("batch")
    p_vectors = sub.add_parser("vectors")
    p_vectors.add_argument("--timestamp", type=int, default=1_700_000_000)
    args = parser.parse_args()

    if args.command == "sign":
        print(sign(args.secret, json.load(sys.stdin), args.timestamp, args.lifetime))
    elif args.command == "verify":
        result = verify(args.secret, args.cookie, args.fallback, args.lifetime, args.now)
        print(json.dumps(result, ensure_ascii=False))
    elif args.command == "batch":
        print(json.dumps([run_job(job) for job in json.load(sys.stdin)]))
    else:
        print(json.dumps(vectors(args.timestamp), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
