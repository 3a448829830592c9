//! An in-process store: sharded maps with O(expired) eviction.

use crate::{
    ApplyOutcome, CreateError, Record, SessionKey, SessionStore, SessionSummary, StoreError,
    UnixMillis, Update,
};
use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;
/// How many expired records a write evicts from its shard on the way: enough
/// to keep memory bounded under a stream of new sessions without a sweeper task.
const EVICT_PER_WRITE: usize = 4;

/// Sessions kept in this process's memory.
///
/// For tests, examples and single-process deployments: everything is lost on
/// restart and nothing is shared between processes. Records live in 16 shards
/// (so concurrent requests rarely contend on one lock); each shard keeps its
/// records ordered by expiry, so eviction costs O(expired), never a scan, and
/// every write also evicts a few expired records so memory stays bounded
/// without a background task.
///
/// ```
/// use keycard::{MemoryStore, SessionLayer};
/// let layer = SessionLayer::new(MemoryStore::new());
/// ```
#[derive(Default)]
pub struct MemoryStore {
    shards: [Mutex<Shard>; SHARDS],
    users: Mutex<HashMap<String, HashSet<SessionKey>>>,
}

#[derive(Default)]
struct Shard {
    records: HashMap<SessionKey, Record>,
    by_expiry: BTreeSet<(UnixMillis, SessionKey)>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves consistent maps (every
    // mutation below is a single insert/remove), so recover instead of failing.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records are held, expired or not (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).records.len()).sum()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &SessionKey) -> MutexGuard<'_, Shard> {
        lock(&self.shards[usize::from(key.as_bytes()[0]) % SHARDS])
    }

    fn index_user(&self, key: SessionKey, old: Option<&str>, new: Option<&str>) {
        if old == new {
            return;
        }
        let mut users = lock(&self.users);
        if let Some(old) = old {
            if let Some(keys) = users.get_mut(old) {
                keys.remove(&key);
                if keys.is_empty() {
                    users.remove(old);
                }
            }
        }
        if let Some(new) = new {
            users.entry(new.to_owned()).or_default().insert(key);
        }
    }

    /// Evicts up to `limit` records expired at `now` from one shard; returns
    /// the evicted records' users for the index.
    fn evict(shard: &mut Shard, now: UnixMillis, limit: usize) -> Vec<(SessionKey, String)> {
        let mut unindex = Vec::new();
        for _ in 0..limit {
            let Some(&(expires, key)) = shard.by_expiry.first() else {
                break;
            };
            if expires > now {
                break;
            }
            shard.by_expiry.pop_first();
            if let Some(record) = shard.records.remove(&key) {
                if let Some(user) = record.user_id {
                    unindex.push((key, user));
                }
            }
        }
        unindex
    }

    fn unindex_all(&self, evicted: Vec<(SessionKey, String)>) {
        for (key, user) in evicted {
            self.index_user(key, Some(&user), None);
        }
    }

    fn insert_new(&self, key: &SessionKey, record: Record) -> Result<(), CreateError> {
        let now = crate::now_millis();
        let user = record.user_id.clone();
        let evicted = {
            let mut shard = self.shard(key);
            if shard.records.get(key).is_some_and(|r| !r.is_expired(now)) {
                return Err(CreateError::DuplicateKey);
            }
            if let Some(old) = shard.records.remove(key) {
                shard.by_expiry.remove(&(old.expires_at(), *key));
            }
            shard.by_expiry.insert((record.expires_at(), *key));
            shard.records.insert(*key, record);
            Self::evict(&mut shard, now, EVICT_PER_WRITE)
        };
        self.index_user(*key, None, user.as_deref());
        self.unindex_all(evicted);
        Ok(())
    }

    fn remove(&self, key: &SessionKey) -> Option<Record> {
        let removed = {
            let mut shard = self.shard(key);
            let removed = shard.records.remove(key);
            if let Some(record) = &removed {
                shard.by_expiry.remove(&(record.expires_at(), *key));
            }
            removed
        };
        if let Some(record) = &removed {
            self.index_user(*key, record.user_id.as_deref(), None);
        }
        removed
    }

    fn summaries(
        &self,
        keys: impl IntoIterator<Item = SessionKey>,
        now: UnixMillis,
    ) -> Vec<SessionSummary> {
        keys.into_iter()
            .filter_map(|key| {
                let shard = self.shard(&key);
                shard
                    .records
                    .get(&key)
                    .filter(|r| !r.is_expired(now))
                    .map(|r| r.summary(key))
            })
            .collect()
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        Ok(self.shard(key).records.get(key).cloned())
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<(), CreateError> {
        self.insert_new(key, record.clone())
    }

    async fn apply(&self, key: &SessionKey, update: &Update) -> Result<ApplyOutcome, StoreError> {
        let now = crate::now_millis();
        let (old_user, new_user) = {
            let mut shard = self.shard(key);
            let shard = &mut *shard;
            let Some(record) = shard.records.get_mut(key).filter(|r| !r.is_expired(now)) else {
                return Ok(ApplyOutcome::Gone);
            };
            let old_expiry = record.expires_at();
            let old_user = record.user_id.clone();
            record.apply(update);
            let new_expiry = record.expires_at();
            let new_user = record.user_id.clone();
            if old_expiry != new_expiry {
                shard.by_expiry.remove(&(old_expiry, *key));
                shard.by_expiry.insert((new_expiry, *key));
            }
            (old_user, new_user)
        };
        self.index_user(*key, old_user.as_deref(), new_user.as_deref());
        Ok(ApplyOutcome::Applied)
    }

    async fn cycle(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        update: &Update,
    ) -> Result<ApplyOutcome, CreateError> {
        let now = crate::now_millis();
        let Some(mut record) = self.remove(old).filter(|r| !r.is_expired(now)) else {
            return Ok(ApplyOutcome::Gone);
        };
        record.apply(update);
        self.insert_new(new, record)?;
        Ok(ApplyOutcome::Applied)
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.remove(key);
        Ok(())
    }

    async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionSummary>, StoreError> {
        let keys: Vec<SessionKey> = lock(&self.users)
            .get(user_id)
            .map(|keys| keys.iter().copied().collect())
            .unwrap_or_default();
        Ok(self.summaries(keys, crate::now_millis()))
    }

    async fn delete_for_user(
        &self,
        user_id: &str,
        except: Option<&SessionKey>,
    ) -> Result<u64, StoreError> {
        let keys: Vec<SessionKey> = lock(&self.users)
            .get(user_id)
            .map(|keys| keys.iter().copied().filter(|k| Some(k) != except).collect())
            .unwrap_or_default();
        let mut deleted = 0;
        for key in keys {
            if self.remove(&key).is_some() {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn sweep(&self, now: UnixMillis, limit: usize) -> Result<u64, StoreError> {
        let mut swept = 0;
        for shard in &self.shards {
            if swept >= limit {
                break;
            }
            let evicted = {
                let mut shard = lock(shard);
                let before = shard.records.len();
                let evicted = Self::evict(&mut shard, now, limit - swept);
                swept += before - shard.records.len();
                evicted
            };
            self.unindex_all(evicted);
        }
        Ok(swept as u64)
    }

    async fn list_all(
        &self,
        after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        let now = crate::now_millis();
        let mut keys: Vec<SessionKey> = self
            .shards
            .iter()
            .flat_map(|shard| {
                lock(shard)
                    .records
                    .iter()
                    .filter(|(key, record)| Some(*key) > after && !record.is_expired(now))
                    .map(|(key, _)| *key)
                    .collect::<Vec<_>>()
            })
            .collect();
        keys.sort_unstable();
        keys.truncate(limit);
        Ok(self.summaries(keys, now))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod conformance {
    use super::MemoryStore;
    crate::conformance_tests!(async { MemoryStore::new() });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fresh_key;

    #[tokio::test]
    async fn writes_evict_expired_records() {
        let store = MemoryStore::new();
        let now = crate::now_millis();
        for _ in 0..200 {
            store
                .create(&fresh_key(), &Record::new(now - 10_000, 1, 1))
                .await
                .unwrap();
        }
        for _ in 0..400 {
            store
                .create(&fresh_key(), &Record::new(now, 60_000, 60_000))
                .await
                .unwrap();
        }
        // Every write evicted up to four expired records from its shard.
        assert!(
            store.len() < 450,
            "expired records were not evicted: {}",
            store.len()
        );
    }
}
