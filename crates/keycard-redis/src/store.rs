//! [`SessionStore`] for [`RedisStore`].

use crate::layout::{decode_record, json_text, record_fields, Fields, DATA_PREFIX};
use crate::{store_error, RedisStore};
use async_trait::async_trait;
use futures_util::future::try_join_all;
use keycard::{
    now_millis, ApplyOutcome, Change, CreateError, Record, SessionKey, SessionStore,
    SessionSummary, StoreError, UnixMillis, Update,
};
use redis::{RedisResult, Value};
use std::future::Future;

/// How many commands one batch sends at once (listings). Each batch is one
/// deadline: over a multiplexed connection it is about one round trip.
const BATCH: usize = 256;

impl RedisStore {
    /// Runs one round trip (or one batch of concurrent ones) under the store's
    /// deadline: a dead or frozen server must cost the request a bounded wait,
    /// whatever redis-rs's reconnection logic is doing underneath.
    async fn call<T>(
        &self,
        request: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(result) => result.map_err(store_error),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// Runs the apply script (`scripts::APPLY_HEAD` documents its arguments).
    async fn run_apply(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<Applied, StoreError> {
        let mut conn = self.conn.clone();
        let reply: Vec<Value> = self.call(invocation.invoke_async(&mut conn)).await?;
        parse_apply_reply(reply)
    }

    async fn fetch(&self, name: String) -> Result<Fields, StoreError> {
        let mut conn = self.conn.clone();
        self.call(redis::cmd("HGETALL").arg(name).query_async(&mut conn))
            .await
    }

    /// `HGETALL` of many session keys, concurrently. A key holding something
    /// other than a hash is that entry's `Corrupt`, not the whole batch's
    /// failure: one bad key must not take down a listing.
    async fn fetch_many(
        &self,
        keys: &[SessionKey],
    ) -> Result<Vec<Result<Fields, StoreError>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH) {
            let requests = chunk.iter().map(|key| {
                let mut conn = self.conn.clone();
                let mut cmd = redis::cmd("HGETALL");
                cmd.arg(self.names.session(key));
                async move { per_key(cmd.query_async::<Fields>(&mut conn).await) }
            });
            out.extend(self.call(try_join_all(requests)).await?);
        }
        Ok(out)
    }

    /// Adds `key` to the user's index, unless the session is already past its
    /// expiry (it is gone then: `PEXPIREAT` in the past deletes).
    async fn index_add(
        &self,
        user: &str,
        key: &SessionKey,
        expires_at: UnixMillis,
    ) -> Result<(), StoreError> {
        if expires_at <= now_millis() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.index_add.key(self.names.user_index(user));
        invocation.arg(key.to_hex()).arg(expires_at);
        self.call(invocation.invoke_async::<i64>(&mut conn))
            .await
            .map(drop)
    }

    async fn index_remove(&self, user: &str, members: &[Vec<u8>]) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SREM");
        cmd.arg(self.names.user_index(user)).arg(members);
        self.call(cmd.query_async::<i64>(&mut conn)).await.map(drop)
    }

    /// The index members of a user: the parseable ones, and the junk (kept as
    /// raw bytes, so that `SREM` removes exactly them).
    async fn index_members(
        &self,
        user: &str,
    ) -> Result<(Vec<SessionKey>, Vec<Vec<u8>>), StoreError> {
        let mut conn = self.conn.clone();
        let members: Vec<Vec<u8>> = self
            .call(
                redis::cmd("SMEMBERS")
                    .arg(self.names.user_index(user))
                    .query_async(&mut conn),
            )
            .await?;
        let mut keys = Vec::with_capacity(members.len());
        let mut junk = Vec::new();
        for member in members {
            match std::str::from_utf8(&member)
                .ok()
                .and_then(SessionKey::from_hex)
            {
                Some(key) => keys.push(key),
                None => junk.push(member),
            }
        }
        Ok((keys, junk))
    }

    /// Lazy index cleanup: a failure is only logged, since the listing it
    /// rides on succeeded and the next listing retries.
    async fn prune_index(&self, user: &str, stale: &[Vec<u8>]) {
        if let Err(error) = self.index_remove(user, stale).await {
            tracing::warn!(%error, stale = stale.len(), "could not prune the Redis user index");
        }
    }

    /// Keys of every session hash, sorted and deduplicated: `SCAN` on the
    /// server, or on every primary of a Cluster.
    async fn scan_sessions(&self) -> Result<Vec<SessionKey>, StoreError> {
        let mut conn = self.conn.clone();
        let nodes = match self.call(conn.primaries()).await? {
            Some(primaries) => primaries.into_iter().map(Some).collect(),
            None => vec![None],
        };
        let pattern = self.names.session_pattern();
        let mut keys = Vec::new();
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply = self.call(conn.on_node(&cmd, node.as_ref())).await?;
                let (next, names): (u64, Vec<Vec<u8>>) =
                    redis::from_redis_value(&reply).map_err(store_error)?;
                keys.extend(
                    names
                        .iter()
                        .filter_map(|name| self.names.parse_session(name)),
                );
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

/// Splits a per-key reply in a batch: `WRONGTYPE` (a non-hash under one of our
/// key names) belongs to that key; anything else fails the batch.
fn per_key<T>(reply: RedisResult<T>) -> RedisResult<Result<T, StoreError>> {
    match reply {
        Ok(value) => Ok(Ok(value)),
        Err(error) if error.code() == Some("WRONGTYPE") => Ok(Err(store_error(error))),
        Err(error) => Err(error),
    }
}

/// Appends one change to the apply script's argument list.
fn push_change(invocation: &mut redis::ScriptInvocation<'_>, change: &Change) {
    match change {
        Change::Set { key, value } => {
            invocation
                .arg("S")
                .arg(format!("{DATA_PREFIX}{key}"))
                .arg(json_text(value));
        }
        Change::Remove { key } => {
            invocation.arg("R").arg(format!("{DATA_PREFIX}{key}"));
        }
        Change::Clear => {
            invocation.arg("C");
        }
        Change::Increment { key, by } => {
            invocation
                .arg("I")
                .arg(format!("{DATA_PREFIX}{key}"))
                .arg(by.to_string());
        }
    }
}

/// What the apply script answered.
enum Applied {
    Gone,
    /// Applied; the user before the update.
    Done(Option<String>),
}

fn parse_apply_reply(reply: Vec<Value>) -> Result<Applied, StoreError> {
    let mut reply = reply.into_iter();
    let status: i64 = match reply.next() {
        Some(value) => redis::from_redis_value(&value).map_err(store_error)?,
        None => {
            return Err(StoreError::Unavailable(
                "empty reply from the apply script".into(),
            ))
        }
    };
    match status {
        0 => Ok(Applied::Gone),
        1 => {
            let has_user: i64 = reply
                .next()
                .map(|v| redis::from_redis_value(&v))
                .transpose()
                .map_err(store_error)?
                .unwrap_or(0);
            let user: Vec<u8> = reply
                .next()
                .map(|v| redis::from_redis_value(&v))
                .transpose()
                .map_err(store_error)?
                .unwrap_or_default();
            let old_user = match has_user {
                0 => None,
                _ => Some(
                    String::from_utf8(user)
                        .map_err(|_| StoreError::Corrupt("stored user ID is not UTF-8".into()))?,
                ),
            };
            Ok(Applied::Done(old_user))
        }
        2 => Err(StoreError::Corrupt(
            "stored deadlines are not integers".into(),
        )),
        other => Err(StoreError::Unavailable(format!(
            "unexpected apply script status {other}"
        ))),
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        decode_record(self.fetch(self.names.session(key)).await?)
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<(), CreateError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.create.key(self.names.session(key));
        invocation.arg(record.expires_at());
        for (field, value) in record_fields(record) {
            invocation.arg(field).arg(value);
        }
        let created: i64 = self.call(invocation.invoke_async(&mut conn)).await?;
        if created == 0 {
            return Err(CreateError::DuplicateKey);
        }
        if let Some(user) = &record.user_id {
            self.index_add(user, key, record.expires_at()).await?;
        }
        Ok(())
    }

    async fn apply(&self, key: &SessionKey, update: &Update) -> Result<ApplyOutcome, StoreError> {
        let mut invocation = self.scripts.apply.key(self.names.session(key));
        invocation
            .arg(now_millis())
            .arg(update.last_seen)
            .arg(update.idle_deadline)
            .arg(update.absolute_deadline)
            .arg(update.expires_at());
        match &update.user_id {
            None => invocation.arg("k").arg(""),
            Some(None) => invocation.arg("-").arg(""),
            Some(Some(user)) => invocation.arg("=").arg(user),
        };
        match &update.client {
            None => {
                invocation.arg("k").arg("-").arg("").arg("-").arg("");
            }
            Some(client) => {
                invocation.arg("=");
                for value in [&client.ip, &client.user_agent] {
                    match value {
                        Some(value) => invocation.arg("=").arg(value),
                        None => invocation.arg("-").arg(""),
                    };
                }
            }
        }
        for change in &update.changes {
            push_change(&mut invocation, change);
        }
        let old_user = match self.run_apply(&invocation).await? {
            Applied::Gone => return Ok(ApplyOutcome::Gone),
            Applied::Done(old_user) => old_user,
        };
        // The session write is done; now the index (another slot). Adding on
        // every write, not only on a user change, stretches the index TTL with
        // the session's and re-adds an entry a failed earlier write left out.
        let new_user = match &update.user_id {
            Some(user) => user.as_deref(),
            None => old_user.as_deref(),
        };
        if let Some(user) = new_user {
            self.index_add(user, key, update.expires_at()).await?;
        }
        if let Some(old) = old_user.as_deref().filter(|old| Some(*old) != new_user) {
            self.index_remove(old, &[key.to_hex().into_bytes()]).await?;
        }
        Ok(ApplyOutcome::Applied)
    }

    async fn apply_and_load(
        &self,
        key: &SessionKey,
        changes: &[Change],
        _now: UnixMillis,
    ) -> Result<Option<Record>, StoreError> {
        // Liveness is the key's existence: Redis drops it at its deadline.
        let mut invocation = self.scripts.apply_load.key(self.names.session(key));
        for change in changes {
            push_change(&mut invocation, change);
        }
        let mut conn = self.conn.clone();
        let fields: Option<Fields> = self.call(invocation.invoke_async(&mut conn)).await?;
        // No index work: neither the user nor the deadlines changed, so the
        // index entry (and its TTL) written by the last full write stands.
        Ok(fields.map(decode_record).transpose()?.flatten())
    }

    async fn cycle(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        update: &Update,
    ) -> Result<ApplyOutcome, CreateError> {
        let mut conn = self.conn.clone();
        let taken: Fields = self
            .call(
                self.scripts
                    .take
                    .key(self.names.session(old))
                    .invoke_async(&mut conn),
            )
            .await?;
        let Some(original) = decode_record(taken)? else {
            return Ok(ApplyOutcome::Gone);
        };
        let old_member = [old.to_hex().into_bytes()];
        if original.is_expired(now_millis()) {
            if let Some(user) = &original.user_id {
                self.index_remove(user, &old_member).await?;
            }
            return Ok(ApplyOutcome::Gone);
        }
        let mut record = original.clone();
        record.apply(update);
        match self.create(new, &record).await {
            Ok(()) => {}
            Err(CreateError::DuplicateKey) => {
                // Only a broken RNG gets here; put the old session back so the
                // layer's retry with a fresh ID finds it.
                if let Err(error) = self.create(old, &original).await {
                    tracing::warn!(%error, "could not restore a session after a key collision");
                }
                return Err(CreateError::DuplicateKey);
            }
            Err(error) => return Err(error),
        }
        // `create` indexed the new key under the (possibly new) user.
        if let Some(user) = &original.user_id {
            self.index_remove(user, &old_member).await?;
        }
        Ok(ApplyOutcome::Applied)
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let user: Option<Vec<u8>> = self
            .call(
                self.scripts
                    .delete
                    .key(self.names.session(key))
                    .invoke_async(&mut conn),
            )
            .await?;
        if let Some(user) = user.and_then(|user| String::from_utf8(user).ok()) {
            self.index_remove(&user, &[key.to_hex().into_bytes()])
                .await?;
        }
        Ok(())
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionSummary>, StoreError> {
        let (keys, mut stale) = self.index_members(user_id).await?;
        let fetched = self.fetch_many(&keys).await?;
        let now = now_millis();
        let mut summaries = Vec::new();
        for (key, fields) in keys.into_iter().zip(fetched) {
            match fields.and_then(decode_record) {
                Ok(Some(record)) if record.user_id.as_deref() == Some(user_id) => {
                    // Expired by our clock but not yet by Redis's: not listed,
                    // and left for Redis to drop (the next listing prunes it).
                    if !record.is_expired(now) {
                        summaries.push(record.summary(key));
                    }
                }
                // Gone (expired or deleted) or moved to another user.
                Ok(_) => stale.push(key.to_hex().into_bytes()),
                Err(error) => {
                    tracing::warn!(%error, ?key, "skipping a corrupt session in a user listing")
                }
            }
        }
        self.prune_index(user_id, &stale).await;
        summaries.sort_by_key(|summary| summary.key);
        Ok(summaries)
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        except: Option<&SessionKey>,
    ) -> Result<u64, StoreError> {
        let (keys, mut stale) = self.index_members(user_id).await?;
        let doomed: Vec<SessionKey> = keys.into_iter().filter(|key| Some(key) != except).collect();
        let mut deleted = 0;
        for chunk in doomed.chunks(BATCH) {
            let requests = chunk.iter().map(|key| {
                let mut conn = self.conn.clone();
                let mut invocation = self.scripts.delete_if_user.key(self.names.session(key));
                invocation.arg(user_id);
                async move { per_key(invocation.invoke_async::<i64>(&mut conn).await) }
            });
            let outcomes = self.call(try_join_all(requests)).await?;
            // A non-hash under a session key name is not this user's session.
            deleted += outcomes
                .iter()
                .filter(|outcome| matches!(outcome, Ok(1)))
                .count() as u64;
        }
        // Every member but `except` is now deleted, gone, or someone else's.
        stale.extend(doomed.iter().map(|key| key.to_hex().into_bytes()));
        self.prune_index(user_id, &stale).await;
        Ok(deleted)
    }

    async fn sweep(&self, _now: UnixMillis, _limit: usize) -> Result<u64, StoreError> {
        // Sessions carry PEXPIREAT and index sets a TTL that follows their
        // longest member: Redis forgets both on its own.
        Ok(0)
    }

    async fn list_all(
        &self,
        after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut keys = self.scan_sessions().await?;
        keys.retain(|key| after.is_none_or(|after| key > after));
        let now = now_millis();
        let mut page = Vec::with_capacity(limit.min(keys.len()));
        // Load in key order until the page is full: a session that expires
        // between SCAN and HGETALL must not make the page short, or a caller
        // paging until a short page would stop early.
        for chunk in keys.chunks(limit.min(BATCH)) {
            let fetched = self.fetch_many(chunk).await?;
            for (key, fields) in chunk.iter().zip(fetched) {
                match fields.and_then(decode_record) {
                    Ok(Some(record)) if !record.is_expired(now) => page.push(record.summary(*key)),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, ?key, "skipping a corrupt session in a listing")
                    }
                }
                if page.len() == limit {
                    return Ok(page);
                }
            }
        }
        Ok(page)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.call(redis::cmd("PING").query_async::<Value>(&mut conn))
            .await
            .map(drop)
    }
}
