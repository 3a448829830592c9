//! An in-process store: sharded maps of encoded records, with O(expired) eviction.

use crate::record::format;
use crate::{
    ApplyOutcome, Change, CreateError, Record, SessionKey, SessionStore, SessionSummary,
    StoreError, UnixMillis, Update,
};
use async_trait::async_trait;
use std::collections::{hash_map, BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;
/// How many due expiry entries a write looks at on the way: enough to keep
/// memory bounded under a stream of new sessions without a sweeper task.
const EVICT_PER_WRITE: usize = 8;

/// Sessions kept in this process's memory.
///
/// For tests, examples and single-process deployments: everything is lost on
/// restart and nothing is shared between processes. Records live in 16 shards
/// (so concurrent requests rarely contend on one lock), each record encoded
/// ([`Record::encode`]: a small session takes about 25 bytes beyond its data,
/// where a `Record` value takes a kilobyte). Each shard files its keys by the
/// second their record expires, so eviction costs O(expired), never a scan,
/// and every write also evicts a few expired records so memory stays bounded
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
    records: HashMap<SessionKey, Entry>,
    /// Keys by the second their record expires. Filed lazily: a record whose
    /// expiry moves later (every touch) stays where it is and is refiled when
    /// that second comes due, so a touch costs no index work. An entry whose
    /// record is gone, or is filed elsewhere, is dropped when its second comes.
    wheel: BTreeMap<i64, VecDeque<SessionKey>>,
    /// Wheel entries known to be stale (their record deleted or refiled);
    /// when they outnumber the records, the wheel is rebuilt, so deletes and
    /// rotations cannot grow it past the live sessions.
    stale: usize,
}

/// Stale wheel entries a shard tolerates beyond one per record.
const STALE_SLACK: usize = 1024;

struct Entry {
    /// [`Record::encode`] output.
    bytes: Box<[u8]>,
    /// The wheel second this record is filed under.
    filed: i64,
}

fn second(at: UnixMillis) -> i64 {
    at.div_euclid(1000)
}

fn expires_at(entry: &Entry) -> UnixMillis {
    // The store wrote these bytes itself; unreadable ones count as expired.
    format::expires_at(&entry.bytes).unwrap_or(UnixMillis::MIN)
}

fn decode(entry: &Entry) -> Result<Record, StoreError> {
    Record::decode(&entry.bytes)
}

/// The entry's record if it is live at `now`, decoded once (its header is
/// not read a second time to check the deadlines). Unreadable bytes count as
/// expired, as in [`expires_at`], unless their header says they are live:
/// then they are a corrupt record.
fn live(entry: Option<&Entry>, now: UnixMillis) -> Result<Option<Record>, StoreError> {
    let Some(entry) = entry else {
        return Ok(None);
    };
    match decode(entry) {
        Ok(record) => Ok(Some(record).filter(|r| r.expires_at() > now)),
        Err(error) if expires_at(entry) > now => Err(error),
        Err(_) => Ok(None),
    }
}

/// Files `key` under the second `expires` falls in; returns that second.
fn file(
    wheel: &mut BTreeMap<i64, VecDeque<SessionKey>>,
    key: SessionKey,
    expires: UnixMillis,
) -> i64 {
    let at = second(expires);
    wheel.entry(at).or_default().push_back(key);
    at
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves consistent maps (every
    // mutation below is a single insert/remove), so recover instead of failing.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What an eviction removed: how many records, and the users to unindex.
#[derive(Default)]
struct Evicted {
    count: usize,
    users: Vec<(SessionKey, String)>,
}

impl Shard {
    /// Stores `record` under `key`, replacing what is there.
    fn put(&mut self, key: SessionKey, record: &Record) {
        let bytes = record.encode().into_boxed_slice();
        let expires = record.expires_at();
        // One lookup: the wheel is borrowed apart from the map.
        let Shard { records, wheel, .. } = self;
        let refiled = match records.entry(key) {
            hash_map::Entry::Occupied(mut occupied) => {
                let entry = occupied.get_mut();
                entry.bytes = bytes;
                // Later expiries wait in their old second; earlier ones must
                // be filed now or they would outlive their deadline.
                let refile = second(expires) < entry.filed;
                if refile {
                    entry.filed = file(wheel, key, expires);
                }
                refile
            }
            hash_map::Entry::Vacant(vacant) => {
                let filed = file(wheel, key, expires);
                vacant.insert(Entry { bytes, filed });
                false
            }
        };
        if refiled {
            self.add_stale();
        }
    }

    fn add_stale(&mut self) {
        self.stale += 1;
        if self.stale > self.records.len() + STALE_SLACK {
            self.rebuild_wheel();
        }
    }

    /// Files every record afresh at its current expiry: O(records), paid
    /// for by the at least as many deletes and refiles that made it due.
    fn rebuild_wheel(&mut self) {
        self.wheel.clear();
        for (key, entry) in &mut self.records {
            entry.filed = file(&mut self.wheel, *key, expires_at(entry));
        }
        self.stale = 0;
    }

    /// Evicts records expired at `now`: looks at wheel entries of seconds up
    /// to `now`'s, oldest first, at most `max_visits` of them, deleting at
    /// most `max_deletes`.
    ///
    /// Within the current second, a write's eviction stops at the first
    /// record not yet expired (records filed later in a second mostly expire
    /// later); a sweep (`thorough`) looks at every entry of that second.
    fn evict(
        &mut self,
        now: UnixMillis,
        max_visits: usize,
        max_deletes: usize,
        thorough: bool,
    ) -> Evicted {
        let mut evicted = Evicted::default();
        let mut visits = 0;
        // Entries of the current second whose record is not yet expired.
        let mut not_yet = VecDeque::new();
        while visits < max_visits && evicted.count < max_deletes {
            let Some(mut bucket) = self.wheel.first_entry() else {
                break;
            };
            let at = *bucket.key();
            if at > second(now) {
                break;
            }
            let Some(key) = bucket.get_mut().pop_front() else {
                bucket.remove();
                continue;
            };
            visits += 1;
            let Some(entry) = self.records.get(&key).filter(|e| e.filed == at) else {
                // Deleted, or filed under another second.
                self.stale = self.stale.saturating_sub(1);
                continue;
            };
            let expires = expires_at(entry);
            if expires <= now {
                if let Some(user) = self
                    .records
                    .remove(&key)
                    .and_then(|e| format::user_id(&e.bytes))
                {
                    evicted.users.push((key, user));
                }
                evicted.count += 1;
            } else if second(expires) == at {
                if !thorough {
                    bucket.get_mut().push_front(key);
                    break;
                }
                not_yet.push_back(key);
            } else {
                let filed = file(&mut self.wheel, key, expires);
                if let Some(entry) = self.records.get_mut(&key) {
                    entry.filed = filed;
                }
            }
        }
        if !not_yet.is_empty() {
            let bucket = self.wheel.entry(second(now)).or_default();
            not_yet.append(bucket);
            *bucket = not_yet;
        }
        evicted
    }

    fn remove(&mut self, key: &SessionKey) -> Option<Record> {
        let entry = self.records.remove(key)?;
        self.add_stale();
        decode(&entry).ok()
    }
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

    fn unindex_all(&self, evicted: Vec<(SessionKey, String)>) {
        for (key, user) in evicted {
            self.index_user(key, Some(&user), None);
        }
    }

    fn insert_new(&self, key: &SessionKey, record: &Record) -> Result<(), CreateError> {
        let now = crate::now_millis();
        let (replaced_user, evicted) = {
            let mut shard = self.shard(key);
            // An expired record under the key may be replaced; a live one never.
            let replaced_user = match shard.records.get(key) {
                Some(old) if expires_at(old) > now => return Err(CreateError::DuplicateKey),
                Some(old) => format::user_id(&old.bytes),
                None => None,
            };
            shard.put(*key, record);
            (
                replaced_user,
                shard.evict(now, EVICT_PER_WRITE, EVICT_PER_WRITE, false),
            )
        };
        self.index_user(*key, replaced_user.as_deref(), None);
        self.index_user(*key, None, record.user_id.as_deref());
        self.unindex_all(evicted.users);
        Ok(())
    }

    fn load_at_once(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        self.shard(key).records.get(key).map(decode).transpose()
    }

    fn apply_and_load_at_once(
        &self,
        key: &SessionKey,
        changes: &[Change],
        now: UnixMillis,
    ) -> Result<Option<Record>, StoreError> {
        let mut shard = self.shard(key);
        // One lookup: the entry is rewritten in place.
        let Some(entry) = shard.records.get_mut(key) else {
            return Ok(None);
        };
        let Some(mut record) = live(Some(entry), now)? else {
            return Ok(None);
        };
        // Only data changes: the deadlines, and so the record's place in the
        // expiry wheel, and the user index stay as they are.
        for change in changes {
            change.apply_to(&mut record.data);
        }
        entry.bytes = record.encode().into_boxed_slice();
        Ok(Some(record))
    }

    fn remove(&self, key: &SessionKey) -> Option<Record> {
        let removed = self.shard(key).remove(key);
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
                let record = self.shard(&key).records.get(&key).map(decode)?.ok()?;
                (!record.is_expired(now)).then(|| record.summary(key))
            })
            .collect()
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        self.load_at_once(key)
    }

    /// The memory store answers at once: this is its `load`.
    fn load_now(&self, key: &SessionKey) -> Option<Result<Option<Record>, StoreError>> {
        Some(self.load_at_once(key))
    }

    async fn create(&self, key: &SessionKey, record: &Record) -> Result<(), CreateError> {
        self.insert_new(key, record)
    }

    async fn apply(&self, key: &SessionKey, update: &Update) -> Result<ApplyOutcome, StoreError> {
        let now = crate::now_millis();
        let (old_user, new_user) = {
            let mut shard = self.shard(key);
            let Some(mut record) = live(shard.records.get(key), now)? else {
                return Ok(ApplyOutcome::Gone);
            };
            let old_user = record.user_id.clone();
            record.apply(update);
            shard.put(*key, &record);
            (old_user, record.user_id)
        };
        self.index_user(*key, old_user.as_deref(), new_user.as_deref());
        Ok(ApplyOutcome::Applied)
    }

    async fn apply_and_load(
        &self,
        key: &SessionKey,
        changes: &[Change],
        now: UnixMillis,
    ) -> Result<Option<Record>, StoreError> {
        self.apply_and_load_at_once(key, changes, now)
    }

    /// The memory store answers at once: this is its `apply_and_load`.
    fn apply_and_load_now(
        &self,
        key: &SessionKey,
        changes: &[Change],
        now: UnixMillis,
    ) -> Option<Result<Option<Record>, StoreError>> {
        Some(self.apply_and_load_at_once(key, changes, now))
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
        self.insert_new(new, &record)?;
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
            let evicted = lock(shard).evict(now, usize::MAX, limit - swept, true);
            swept += evicted.count;
            self.unindex_all(evicted.users);
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
                    .filter(|(key, entry)| Some(*key) > after && expires_at(entry) > now)
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
    use std::sync::Arc;

    /// The layer holds its store as `Arc<dyn SessionStore>`: the memory
    /// store's immediate answers must reach it through that.
    #[test]
    fn answers_at_once_through_a_shared_trait_object() {
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let shared = Arc::new(store.clone());
        let key = fresh_key();
        assert_eq!(store.load_now(&key), Some(Ok(None)));
        assert_eq!(shared.load_now(&key), Some(Ok(None)));
        assert_eq!(
            shared.apply_and_load_now(&key, &[], crate::now_millis()),
            Some(Ok(None))
        );
    }

    fn wheel_entries(store: &MemoryStore) -> usize {
        store
            .shards
            .iter()
            .map(|s| lock(s).wheel.values().map(VecDeque::len).sum::<usize>())
            .sum()
    }

    #[tokio::test]
    async fn deletes_and_rotations_do_not_grow_the_wheel() {
        let store = MemoryStore::new();
        let now = crate::now_millis();
        let live = Record::new(now, 3_600_000, 3_600_000);
        let update = Update::keeping_deadlines(vec![], &live);
        for _ in 0..20_000 {
            let key = fresh_key();
            store.create(&key, &live).await.unwrap();
            store.cycle(&key, &fresh_key(), &update).await.unwrap();
        }
        for _ in 0..20_000 {
            let key = fresh_key();
            store.create(&key, &live).await.unwrap();
            store.delete(&key).await.unwrap();
        }
        // 20,000 live records; without compaction 60,000 entries.
        assert_eq!(store.len(), 20_000);
        let entries = wheel_entries(&store);
        assert!(
            entries <= 2 * 20_000 + SHARDS * STALE_SLACK,
            "the wheel grew with deletes: {entries}"
        );
        // Every live record is still filed where eviction will find it.
        assert_eq!(
            store.sweep(now + 3_600_001, usize::MAX).await.unwrap(),
            20_000
        );
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn an_expiry_moved_earlier_is_swept_on_time() {
        let store = MemoryStore::new();
        let now = crate::now_millis();
        let (early, late) = (fresh_key(), fresh_key());
        for key in [&early, &late] {
            store
                .create(key, &Record::new(now, 3_600_000, 3_600_000))
                .await
                .unwrap();
        }
        // A write that brings one deadline forward (and one that moves the
        // other later) files them anew where they now expire.
        let record = store.load(&early).await.unwrap().unwrap();
        let mut update = Update::keeping_deadlines(Vec::new(), &record);
        update.idle_deadline = now + 1_000;
        store.apply(&early, &update).await.unwrap();
        update.idle_deadline = now + 7_200_000;
        update.absolute_deadline = now + 7_200_000;
        store.apply(&late, &update).await.unwrap();
        // Two seconds on: the early one is swept (it is not still waiting in
        // its old second, an hour away); the late one stays.
        assert_eq!(store.sweep(now + 2_000, 100).await.unwrap(), 1);
        assert!(store.load(&early).await.unwrap().is_none());
        assert!(store.load(&late).await.unwrap().is_some());
        assert_eq!(store.sweep(now + 3_700_000, 100).await.unwrap(), 0);
    }

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
        // Every write evicted up to EVICT_PER_WRITE expired records from its shard.
        assert!(
            store.len() < 450,
            "expired records were not evicted: {}",
            store.len()
        );
    }
}
