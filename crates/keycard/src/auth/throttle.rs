//! Login throttling per account and per source address, with exponential
//! lockouts, kept in the session store so every server process shares it.

use super::data_number;
use crate::session::timed;
use crate::{
    now_millis, reserved, Change, CreateError, Record, SessionConfig, SessionKey, SessionStore,
    StoreError, Update,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A login attempt that must wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// How long until the next attempt is considered (for `Retry-After`).
    pub retry_after: Duration,
}

impl Throttled {
    /// The `Retry-After` value in whole seconds, rounded up (a client that
    /// waits that long is not refused again for being a moment early), at
    /// least 1.
    ///
    /// ```
    /// use keycard::auth::Throttled;
    /// use std::time::Duration;
    /// let locked = Throttled { retry_after: Duration::from_millis(59_200) };
    /// assert_eq!(locked.retry_after_secs(), 60);
    /// ```
    pub fn retry_after_secs(&self) -> u64 {
        u64::try_from(self.retry_after.as_millis().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// Counts login attempts per account and per source address.
///
/// [`check`](Self::check) counts the attempt before the password is verified
/// (atomically, so guesses sent in parallel cannot all pass while the count
/// is read), and refuses it once `per_account` attempts for one account (from
/// any address) or `per_address` attempts from one address came within one
/// `window`; [`success`](Self::success) takes back a good one (the account's
/// count starts again, the address's loses this attempt), so only failures
/// add up. Past a limit the account (or address) is locked for `lockout`,
/// doubling with each further lockout within a day (capped at one hour);
/// while locked, even the right password waits, and after it the count
/// starts again. An IPv6 "address" is its /64 network: one subscriber holds a
/// whole /64 and could otherwise try from 2^64 addresses.
///
/// Counts are exact with a store whose
/// [`apply_and_load`](crate::SessionStore::apply_and_load) is atomic, as all
/// of keycard's are.
///
/// ```no_run
/// # async fn demo(store: std::sync::Arc<dyn keycard::SessionStore>) -> Result<(), keycard::StoreError> {
/// use keycard::auth::LoginThrottle;
/// let throttle = LoginThrottle::new(store);
/// match throttle.check("alice", Some("192.0.2.1")).await? {
///     Err(throttled) => println!("429, retry after {:?}", throttled.retry_after),
///     Ok(attempt) => {
///         let password_is_right = false; // verify it here
///         if password_is_right {
///             throttle.success(&attempt).await?;
///         }
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LoginThrottle {
    store: Arc<dyn SessionStore>,
    config: SessionConfig,
    /// Failed attempts per account before a lockout. Default: 10.
    pub per_account: i64,
    /// Failed attempts per source address before a lockout. Default: 50.
    pub per_address: i64,
    /// The window attempts are counted in. Default: 15 minutes.
    pub window: Duration,
    /// The first lockout's length; each further one doubles it, up to an hour. Default: 1 minute.
    pub lockout: Duration,
}

/// A login attempt [`LoginThrottle::check`] let through and counted: hand it
/// to [`LoginThrottle::success`] when the password was right, or to
/// [`LoginThrottle::cancel`] when it could not be checked.
#[derive(Debug)]
pub struct LoginAttempt {
    /// The counters it was counted on: key, counter field, whether the
    /// account's.
    counted: Vec<(SessionKey, String, bool)>,
}

/// What the per-address count is kept for: an IPv4 address (also when written
/// IPv4-mapped), the /64 network of an IPv6 one, or the text as given when it
/// is not an address.
fn address_group(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let network = u128::from(v6) & !u128::from(u64::MAX);
                format!("{}/64", std::net::Ipv6Addr::from(network))
            }
        },
        Ok(v4) => v4.to_string(),
        Err(_) => ip.to_owned(),
    }
}

const DAY_MS: i64 = 24 * 3600 * 1000;
const MAX_LOCK_MS: i64 = 3600 * 1000;
/// The counter fields: `fails.<window number>.<lockouts so far>`.
const FAILS: &str = "fails.";
/// Logged once per process: attempts without an address are counted per
/// account only.
static NO_ADDRESS_LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl LoginThrottle {
    /// A throttle with the defaults, sharing `store`.
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        LoginThrottle {
            store,
            config: SessionConfig::default(),
            per_account: 10,
            per_address: 50,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(60),
        }
    }

    /// Sets how long each of its store calls may take (default 1 s; use the
    /// session layer's [`store_timeout`](SessionConfig::store_timeout)).
    #[must_use]
    pub fn with_store_timeout(mut self, timeout: Duration) -> Self {
        self.config.store_timeout = timeout;
        self
    }

    /// The counters an attempt for `username` from `ip` counts on, each with
    /// its limit and whether it is the account's.
    fn counters(&self, username: &str, ip: Option<&str>) -> Vec<(SessionKey, i64, bool)> {
        let account = SessionKey::derive("throttle-account", &username.to_lowercase());
        let mut counters = vec![(account, self.per_account, true)];
        match ip {
            Some(ip) => counters.push((
                SessionKey::derive("throttle-address", &address_group(ip)),
                self.per_address,
                false,
            )),
            None => {
                if !NO_ADDRESS_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::error!(target: "keycard", event = "throttle_without_address", "login attempt without a client address (serve with into_make_service_with_connect_info, or insert PeerAddr): the per-address limit is not applied");
                }
            }
        }
        counters
    }

    /// Counts a login attempt for `username` from `ip` (call it before
    /// verifying the password). `Err(Throttled)` when the account or the
    /// address is locked, or this attempt is over a limit (it then locks
    /// them): answer 429 without looking at the password.
    pub async fn check(
        &self,
        username: &str,
        ip: Option<&str>,
    ) -> Result<Result<LoginAttempt, Throttled>, StoreError> {
        let now = now_millis();
        let counters = self.counters(username, ip);
        // A lock on either refuses the attempt before anything is counted: a
        // locked address must not go on filling accounts' counts (nor the
        // reverse), or it could lock out any account it names.
        // Nothing is made for a refused attempt either (a locked address
        // naming made-up users must not fill the store).
        let mut wait = 0;
        let mut records = Vec::with_capacity(counters.len());
        for (key, _, _) in &counters {
            let record = timed(&self.config, self.store.load(key))
                .await?
                .filter(|r| !r.is_expired(now));
            if let Some(record) = &record {
                wait = wait.max(data_number(record, "locked_until").saturating_sub(now));
            }
            records.push(record);
        }
        let mut attempt = LoginAttempt {
            counted: Vec::new(),
        };
        if wait <= 0 {
            for ((key, limit, is_account), record) in counters.into_iter().zip(records) {
                let record = match record {
                    Some(record) => record,
                    None => self.new_record(&key, now).await?,
                };
                match self.count(&key, record, limit, now).await? {
                    Counted::Within(field) => attempt.counted.push((key, field, is_account)),
                    Counted::Refused(ms) => wait = wait.max(ms),
                }
            }
        }
        if wait > 0 {
            // Refused by one counter: not counted on the others either.
            self.take_back(&attempt, false).await?;
            return Ok(Err(Throttled {
                retry_after: Duration::from_millis(u64::try_from(wait).unwrap_or(0))
                    .max(Duration::from_secs(1)),
            }));
        }
        Ok(Ok(attempt))
    }

    /// The attempt was a good one: the account's count starts again, and the
    /// address's loses this attempt (so the users behind one address are not
    /// locked out by logging in).
    pub async fn success(&self, attempt: &LoginAttempt) -> Result<(), StoreError> {
        self.take_back(attempt, true).await
    }

    /// The attempt was never judged (the password check itself failed: an
    /// overloaded pool, a database down; the answer is a 503): it is not
    /// counted, so such failures cannot lock anyone out.
    pub async fn cancel(&self, attempt: &LoginAttempt) -> Result<(), StoreError> {
        self.take_back(attempt, false).await
    }

    /// Takes `attempt` off its counters; with `reset_account`, the account's
    /// count starts again.
    async fn take_back(
        &self,
        attempt: &LoginAttempt,
        reset_account: bool,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        for (key, field, is_account) in &attempt.counted {
            let change = if *is_account && reset_account {
                Change::Set {
                    key: field.clone(),
                    value: Value::from(0),
                }
            } else {
                Change::Increment {
                    key: field.clone(),
                    by: -1,
                }
            };
            timed(&self.config, self.store.apply_and_load(key, &[change], now)).await?;
        }
        Ok(())
    }

    fn lock_ms(&self, lockouts: i64) -> i64 {
        let base = i64::try_from(self.lockout.as_millis()).unwrap_or(MAX_LOCK_MS);
        // At least a millisecond: a zero lock would let the attempt over the
        // limit through.
        base.saturating_mul(1 << lockouts.clamp(0, 20))
            .clamp(1, MAX_LOCK_MS)
    }

    /// The counter record at `key`, made if there is none (or only an
    /// expired one).
    async fn live_record(&self, key: &SessionKey, now: i64) -> Result<Record, StoreError> {
        match timed(&self.config, self.store.load(key)).await? {
            Some(record) if !record.is_expired(now) => Ok(record),
            _ => self.new_record(key, now).await,
        }
    }

    /// A new counter record at `key` (where a load found none live).
    async fn new_record(&self, key: &SessionKey, now: i64) -> Result<Record, StoreError> {
        let mut record = Record::new(now, DAY_MS, DAY_MS);
        record
            .data
            .insert(reserved::KIND.into(), Value::from("throttle"));
        match timed(&self.config, self.store.create(key, &record)).await {
            // Another request made it first: count on that one (every
            // decision below reads the record as the increment left it).
            Ok(()) | Err(CreateError::DuplicateKey) => Ok(record),
            Err(CreateError::Store(error)) => Err(error),
        }
    }

    /// Counts one attempt on `key` (whose record was just read as `record`),
    /// in the field of the current window and lockout count: a window's or a
    /// lockout's end starts a new field, so no count is ever overwritten (a
    /// reset racing parallel attempts would wipe theirs), and what `success`
    /// takes back comes off the field it was added to.
    async fn count(
        &self,
        key: &SessionKey,
        mut record: Record,
        limit: i64,
        now: i64,
    ) -> Result<Counted, StoreError> {
        let window = i64::try_from(self.window.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let mut tries = 0;
        let (field, after) = loop {
            let lockouts = data_number(&record, "lockouts");
            let this_window = now / window;
            let field = format!("{FAILS}{this_window}.{lockouts}");
            let changes = [
                Change::Increment {
                    key: field.clone(),
                    by: 1,
                },
                // Two windows back: no attempt still counts there.
                Change::Remove {
                    key: format!("{FAILS}{}.{lockouts}", this_window.saturating_sub(2)),
                },
            ];
            match timed(&self.config, self.store.apply_and_load(key, &changes, now)).await? {
                Some(after) => break (field, after),
                // The record expired (or was swept) since it was read: count
                // on a new one; never let an uncounted attempt through.
                None if tries < 2 => {
                    tries += 1;
                    record = self.live_record(key, now).await?;
                }
                None => return Ok(Counted::Refused(self.lock_ms(0))),
            }
        };
        // Locked by a parallel attempt while this one was on its way.
        let locked = data_number(&after, "locked_until").saturating_sub(now);
        if locked > 0 {
            return Ok(Counted::Refused(locked));
        }
        if data_number(&after, &field) <= limit {
            return Ok(Counted::Within(field));
        }
        // Over the limit with no lock in force: lock. Every attempt that gets
        // here writes the same lockout count (not one more each), so a burst
        // locks once, and a lock whose writer was cut off is written by the
        // next one. The old counter fields go: the next lockout counts anew.
        let lockouts = data_number(&record, "lockouts");
        let lock = self.lock_ms(lockouts);
        tracing::warn!(target: "keycard::security", event = "login_throttled", lockouts = lockouts + 1, lock_ms = lock, "too many failed logins; locked");
        let mut changes = vec![
            Change::Set {
                key: "locked_until".into(),
                value: Value::from(now.saturating_add(lock)),
            },
            Change::Set {
                key: "lockouts".into(),
                value: Value::from(lockouts.saturating_add(1)),
            },
        ];
        changes.extend(
            after
                .data
                .keys()
                .filter(|k| k.starts_with(FAILS))
                .map(|k| Change::Remove { key: k.clone() }),
        );
        let update = Update::lasting(changes, now, DAY_MS);
        timed(&self.config, self.store.apply(key, &update)).await?;
        Ok(Counted::Refused(lock))
    }
}

/// What counting one attempt on one counter gave.
enum Counted {
    /// Within the limit, counted in this field.
    Within(String),
    /// Refused: wait this many milliseconds.
    Refused(i64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[test]
    fn ipv6_addresses_count_per_64() {
        assert_eq!(address_group("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(address_group("2001:db8:1:2:ffff::9"), "2001:db8:1:2::/64");
        assert_ne!(address_group("2001:db8:1:3::1"), "2001:db8:1:2::/64");
        assert_eq!(address_group("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(address_group("192.0.2.7"), "192.0.2.7");
        assert_eq!(address_group("not an ip"), "not an ip");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_guesses_get_no_more_than_the_limit() {
        let throttle = LoginThrottle::new(Arc::new(MemoryStore::new()));
        let attempts = (0..30).map(|i| {
            let throttle = throttle.clone();
            tokio::spawn(async move {
                let ip = format!("192.0.2.{i}");
                throttle.check("alice", Some(&ip)).await.unwrap().is_ok()
            })
        });
        let mut passed = 0;
        for attempt in attempts {
            passed += i64::from(attempt.await.unwrap());
        }
        assert_eq!(passed, throttle.per_account);
        // Locked once (one minute), not once per refused attempt.
        let locked = throttle.check("alice", None).await.unwrap().unwrap_err();
        assert!(locked.retry_after <= Duration::from_secs(60), "{locked:?}");
    }

    async fn passing(throttle: &LoginThrottle, user: &str, tries: usize) -> usize {
        let attempts: Vec<_> = (0..tries)
            .map(|i| {
                let throttle = throttle.clone();
                let user = user.to_owned();
                tokio::spawn(async move {
                    let ip = format!("198.51.100.{}", i % 200);
                    throttle.check(&user, Some(&ip)).await.unwrap().is_ok()
                })
            })
            .collect();
        let mut passed = 0;
        for attempt in attempts {
            passed += usize::from(attempt.await.unwrap());
        }
        passed
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_as_the_window_turns_gets_no_more_than_the_limit() {
        let mut throttle = LoginThrottle::new(Arc::new(MemoryStore::new()));
        throttle.window = Duration::from_millis(400);
        assert!(throttle.check("carol", None).await.unwrap().is_ok());
        // Into the next window: the old count is not reset by overwriting.
        let window = 400;
        let into = u64::try_from(now_millis() % window).unwrap();
        tokio::time::sleep(Duration::from_millis(400 - into + 20)).await;
        assert_eq!(passing(&throttle, "carol", 40).await, 10);
    }

    #[tokio::test]
    async fn after_a_lockout_the_count_starts_again_and_the_next_lock_is_longer() {
        let mut throttle = LoginThrottle::new(Arc::new(MemoryStore::new()));
        // (Retry-After is at least a second.)
        throttle.lockout = Duration::from_millis(1_100);
        assert_eq!(passing(&throttle, "dave", 11).await, 10);
        let first = throttle.check("dave", None).await.unwrap().unwrap_err();
        assert!(first.retry_after <= Duration::from_millis(1_100));
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert_eq!(passing(&throttle, "dave", 11).await, 10);
        let second = throttle.check("dave", None).await.unwrap().unwrap_err();
        assert!(
            second.retry_after > Duration::from_millis(1_100),
            "{second:?}"
        );
    }

    #[tokio::test]
    async fn good_logins_taken_back_after_a_lock_give_no_extra_tries() {
        let mut throttle = LoginThrottle::new(Arc::new(MemoryStore::new()));
        throttle.per_address = 5;
        throttle.lockout = Duration::from_millis(150);
        let ip = Some("203.0.113.5");
        // Three logins still being verified when three guesses lock the address.
        let mut pending = Vec::new();
        for i in 0..3 {
            pending.push(
                throttle
                    .check(&format!("good{i}"), ip)
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        for i in 0..3 {
            let _ = throttle.check(&format!("guess{i}"), ip).await.unwrap();
        }
        assert!(
            throttle.check("guess", ip).await.unwrap().is_err(),
            "locked"
        );
        for attempt in &pending {
            throttle.success(attempt).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut passed = 0;
        for i in 0..10 {
            passed += usize::from(
                throttle
                    .check(&format!("after{i}"), ip)
                    .await
                    .unwrap()
                    .is_ok(),
            );
        }
        assert_eq!(
            passed, 5,
            "the limit, not the limit plus the three taken back"
        );
    }

    #[tokio::test]
    async fn a_locked_address_fills_no_account_count() {
        let mut throttle = LoginThrottle::new(Arc::new(MemoryStore::new()));
        throttle.per_address = 3;
        let locked = Some("192.0.2.66");
        for i in 0..4 {
            let _ = throttle.check(&format!("guess{i}"), locked).await.unwrap();
        }
        // Refused at the address, and not counted on the account it names.
        for _ in 0..3 * throttle.per_account {
            assert!(throttle.check("victim", locked).await.unwrap().is_err());
        }
        for i in 0..throttle.per_account {
            let ip = format!("198.51.100.{i}");
            assert!(
                throttle.check("victim", Some(&ip)).await.unwrap().is_ok(),
                "{i}"
            );
        }
    }

    #[tokio::test]
    async fn cancelled_attempts_do_not_count() {
        let throttle = LoginThrottle::new(Arc::new(MemoryStore::new()));
        for _ in 0..3 * throttle.per_account {
            let attempt = throttle.check("erin", None).await.unwrap().unwrap();
            throttle.cancel(&attempt).await.unwrap();
        }
        for _ in 0..throttle.per_account {
            assert!(throttle.check("erin", None).await.unwrap().is_ok());
        }
        assert!(throttle.check("erin", None).await.unwrap().is_err());
    }

    #[tokio::test]
    async fn good_logins_do_not_add_up() {
        let throttle = LoginThrottle::new(Arc::new(MemoryStore::new()));
        let ip = Some("192.0.2.9");
        // Many users behind one address, each logging in at the first try.
        for i in 0..3 * throttle.per_address {
            let user = format!("user{i}");
            let attempt = throttle.check(&user, ip).await.unwrap().unwrap();
            throttle.success(&attempt).await.unwrap();
        }
        // One user's failures count; a success starts them again.
        for _ in 0..throttle.per_account - 1 {
            assert!(throttle.check("bob", ip).await.unwrap().is_ok());
        }
        let attempt = throttle.check("bob", ip).await.unwrap().unwrap();
        throttle.success(&attempt).await.unwrap();
        for _ in 0..throttle.per_account {
            assert!(throttle.check("bob", ip).await.unwrap().is_ok());
        }
        assert!(throttle.check("bob", ip).await.unwrap().is_err());
    }

    #[tokio::test]
    async fn failures_from_one_ipv6_network_share_a_count() {
        let throttle = LoginThrottle::new(Arc::new(MemoryStore::new()));
        for i in 0..throttle.per_address {
            let ip = format!("2001:db8:1:2::{:x}", i + 1);
            assert!(throttle
                .check(&format!("user{i}"), Some(&ip))
                .await
                .unwrap()
                .is_ok());
        }
        let next = throttle
            .check("someone", Some("2001:db8:1:2:abcd::1"))
            .await
            .unwrap();
        assert!(next.is_err(), "the /64 is locked");
        let other = throttle
            .check("someone", Some("2001:db8:1:3::1"))
            .await
            .unwrap();
        assert!(other.is_ok(), "another /64 is not");
    }
}
