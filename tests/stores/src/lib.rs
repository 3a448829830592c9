//! Cross-store HTTP tests live in `tests/`: the same user stories run against
//! every store keycard ships (memory, SQLite, Redis, Redis Cluster,
//! PostgreSQL), through the real session layer over real HTTP.
#![forbid(unsafe_code)]
