//! The table layout and its migrations, applied when a store connects.

use crate::error::pg_error;
use keycard::StoreError;

/// Each migration runs once, in order. Never edit a released entry: append.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
CREATE TABLE keycard_sessions (
    key bytea PRIMARY KEY CHECK (octet_length(key) = 32),
    user_id text,
    created_at bigint NOT NULL,
    last_seen bigint NOT NULL,
    idle_deadline bigint NOT NULL,
    absolute_deadline bigint NOT NULL,
    expires_at bigint NOT NULL,
    ip text,
    user_agent text,
    format smallint NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX keycard_sessions_user ON keycard_sessions (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX keycard_sessions_expiry ON keycard_sessions (expires_at);

-- Applies a request's changes (keycard::Change, serialized as
-- {"op": "set" | "remove" | "clear" | "increment", ...}) to a data object,
-- with the semantics of Change::apply_to. Called inside one UPDATE, so the
-- row lock makes each request's changes atomic against the latest data: two
-- requests changing different keys both keep their change, and no increment
-- is lost.
CREATE OR REPLACE FUNCTION keycard_apply_changes(data jsonb, changes jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    change jsonb;
    found_value jsonb;
    amount numeric;
BEGIN
    FOR change IN SELECT value FROM jsonb_array_elements(changes) LOOP
        CASE change->>'op'
        WHEN 'set' THEN
            data := data || jsonb_build_object(change->>'key', change->'value');
        WHEN 'remove' THEN
            data := data - (change->>'key');
        WHEN 'clear' THEN
            data := '{}'::jsonb;
        WHEN 'increment' THEN
            found_value := data->(change->>'key');
            -- Like serde_json's as_i64: only a number written without a
            -- fraction or exponent that fits in a bigint counts; anything
            -- else (missing, text, 1.5, 2.0) counts as 0.
            amount := 0;
            IF jsonb_typeof(found_value) = 'number' AND found_value::text ~ '^-?[0-9]+$' THEN
                amount := found_value::text::numeric;
                IF amount < -9223372036854775808 OR amount > 9223372036854775807 THEN
                    amount := 0;
                END IF;
            END IF;
            -- Saturating, like i64::saturating_add.
            amount := LEAST(GREATEST(amount + (change->>'by')::numeric,
                                     -9223372036854775808), 9223372036854775807);
            data := data || jsonb_build_object(change->>'key', amount::bigint);
        ELSE
            RAISE EXCEPTION 'keycard: unknown change %', change->>'op';
        END CASE;
    END LOOP;
    RETURN data;
END
$fn$;
"#,
)];

/// The newest schema this release knows.
pub(crate) const SCHEMA_VERSION: i32 = 1;

/// Serializes migrations across every process connecting at once: without
/// it, two servers starting together could both see an empty version table
/// and race to create the same objects. (The bytes spell "keycard!".)
const MIGRATION_LOCK: i64 = 0x6b65_7963_6172_6421;

/// Brings the schema up to date; a no-op when it already is.
pub(crate) async fn migrate(client: &mut deadpool_postgres::Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    // A transaction-scoped lock is released by commit or rollback, so a
    // failed migration cannot leave a pooled connection holding it.
    tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS keycard_schema_version (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(pg_error)?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM keycard_schema_version",
            &[],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(pg_error)?;
    if current > SCHEMA_VERSION {
        // Migrations only add, so an older release can keep serving during a
        // rolling deploy or a rollback; say so rather than refuse to start.
        tracing::warn!(
            current,
            known = SCHEMA_VERSION,
            "keycard PostgreSQL schema is newer than this release"
        );
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        tx.batch_execute(sql).await.map_err(pg_error)?;
        tx.execute(
            "INSERT INTO keycard_schema_version (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)
}
