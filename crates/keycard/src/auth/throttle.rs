//! Login throttling per account and per source address, with exponential
//! lockouts, kept in the session store so every server process shares it.

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
/// any address) or `per_address` attempts from one address came within
/// `window`; [`success`](Self::success) takes back a good one (the account's
/// count starts again, the address's loses this attempt), so only failures
/// add up. Past a limit the account (or address) is locked for `lockout`,
/// doubling with each further lockout within a day (capped at one hour);
/// while locked, even the right password waits. An IPv6 "address" is its /64
/// network: one subscriber holds a whole /64 and could otherwise try from
/// 2^64 addresses.
///
/// ```no_run
/// # async fn demo(store: std::sync::Arc<dyn keycard::SessionStore>) -> Result<(), keycard::StoreError> {
/// use keycard::auth::LoginThrottle;
/// let throttle = LoginThrottle::new(store);
/// let ip = Some("192.0.2.1");
/// match throttle.check("alice", ip).await? {
///     Err(throttled) => println!("429, retry after {:?}", throttled.retry_after),
///     Ok(()) => {
///         let password_is_right = false; // verify it here
///         if password_is_right {
///             throttle.success("alice", ip).await?;
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
/// Logged once per process: attempts without an address are counted per
/// account only.
static NO_ADDRESS_LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
const MAX_LOCK_MS: i64 = 3600 * 1000;

fn number(record: &Record, field: &str) -> i64 {
    record.data.get(field).and_then(Value::as_i64).unwrap_or(0)
}

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

    fn account_key(username: &str) -> SessionKey {
        SessionKey::derive("throttle-account", &username.to_lowercase())
    }

    fn address_key(ip: &str) -> SessionKey {
        SessionKey::derive("throttle-address", &address_group(ip))
    }

    /// The counters an attempt for `username` from `ip` counts on, each with
    /// its limit.
    fn counters(&self, username: &str, ip: Option<&str>) -> Vec<(SessionKey, i64)> {
        let mut counters = vec![(Self::account_key(username), self.per_account)];
        match ip {
            Some(ip) => counters.push((Self::address_key(ip), self.per_address)),
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
    /// address is locked, or this attempt is one over a limit (it then locks
    /// them): answer 429 without looking at the password.
    pub async fn check(
        &self,
        username: &str,
        ip: Option<&str>,
    ) -> Result<Result<(), Throttled>, StoreError> {
        let now = now_millis();
        let counters = self.counters(username, ip);
        // Already locked: refused, and not counted against the next window.
        let mut wait = 0;
        for (key, _) in &counters {
            if let Some(record) = timed(&self.config, self.store.load(key)).await? {
                wait = wait.max(number(&record, "locked_until") - now);
            }
        }
        if wait <= 0 {
            for (key, limit) in &counters {
                wait = wait.max(self.count(key, *limit, now).await?);
            }
        }
        if wait > 0 {
            return Ok(Err(Throttled {
                retry_after: Duration::from_millis(u64::try_from(wait).unwrap_or(0))
                    .max(Duration::from_secs(1)),
            }));
        }
        Ok(Ok(()))
    }

    /// The attempt [`check`](Self::check) let through was a good one: the
    /// account's count starts again, and the address's loses this attempt
    /// (so the users behind one address are not locked out by logging in).
    pub async fn success(&self, username: &str, ip: Option<&str>) -> Result<(), StoreError> {
        let now = now_millis();
        let reset = [Change::Set {
            key: "fails".into(),
            value: Value::from(0),
        }];
        timed(
            &self.config,
            self.store
                .apply_and_load(&Self::account_key(username), &reset, now),
        )
        .await?;
        if let Some(ip) = ip {
            let back = [Change::Increment {
                key: "fails".into(),
                by: -1,
            }];
            timed(
                &self.config,
                self.store
                    .apply_and_load(&Self::address_key(ip), &back, now),
            )
            .await?;
        }
        Ok(())
    }

    /// Counts one attempt on `key`; the milliseconds to wait when it is over
    /// `limit` (else 0). Only the attempt that crosses the limit writes the
    /// lock, so a burst of parallel attempts locks once, not once each.
    async fn count(&self, key: &SessionKey, limit: i64, now: i64) -> Result<i64, StoreError> {
        let window = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        let started = match timed(&self.config, self.store.load(key)).await? {
            Some(record) if !record.is_expired(now) => number(&record, "window_start"),
            _ => {
                let mut record = Record::new(now, DAY_MS, DAY_MS);
                record
                    .data
                    .insert(reserved::KIND.into(), Value::from("throttle"));
                record.data.insert("window_start".into(), Value::from(now));
                record.data.insert("fails".into(), Value::from(0));
                match timed(&self.config, self.store.create(key, &record)).await {
                    // Another request created it first: count on that one.
                    Ok(()) | Err(CreateError::DuplicateKey) => {}
                    Err(CreateError::Store(error)) => return Err(error),
                }
                now
            }
        };
        let changes = if now - started > window {
            vec![
                Change::Set {
                    key: "window_start".into(),
                    value: Value::from(now),
                },
                Change::Set {
                    key: "fails".into(),
                    value: Value::from(1),
                },
            ]
        } else {
            vec![Change::Increment {
                key: "fails".into(),
                by: 1,
            }]
        };
        let Some(after) =
            timed(&self.config, self.store.apply_and_load(key, &changes, now)).await?
        else {
            return Ok(0);
        };
        // Locked by an attempt that crossed the limit while this one was on
        // its way (the lock starts the count again).
        let locked = number(&after, "locked_until").saturating_sub(now);
        if locked > 0 {
            return Ok(locked);
        }
        let fails = number(&after, "fails");
        if fails <= limit {
            return Ok(0);
        }
        let lockouts = number(&after, "lockouts");
        let base = i64::try_from(self.lockout.as_millis()).unwrap_or(MAX_LOCK_MS);
        let lock = base
            .saturating_mul(1 << lockouts.clamp(0, 20))
            .min(MAX_LOCK_MS);
        if fails == limit.saturating_add(1) {
            tracing::warn!(target: "keycard::security", event = "login_throttled", lockouts = lockouts + 1, lock_ms = lock, "too many failed logins; locked");
            let changes = vec![
                Change::Set {
                    key: "locked_until".into(),
                    value: Value::from(now.saturating_add(lock)),
                },
                Change::Increment {
                    key: "lockouts".into(),
                    by: 1,
                },
                Change::Set {
                    key: "fails".into(),
                    value: Value::from(0),
                },
                Change::Set {
                    key: "window_start".into(),
                    value: Value::from(now),
                },
            ];
            let update = Update::lasting(changes, now, DAY_MS);
            timed(&self.config, self.store.apply(key, &update)).await?;
        }
        Ok(lock)
    }
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

    #[tokio::test]
    async fn good_logins_do_not_add_up() {
        let throttle = LoginThrottle::new(Arc::new(MemoryStore::new()));
        let ip = Some("192.0.2.9");
        // Many users behind one address, each logging in at the first try.
        for i in 0..3 * throttle.per_address {
            let user = format!("user{i}");
            assert!(throttle.check(&user, ip).await.unwrap().is_ok(), "{i}");
            throttle.success(&user, ip).await.unwrap();
        }
        // One user's failures count; a success starts them again.
        for _ in 0..throttle.per_account - 1 {
            assert!(throttle.check("bob", ip).await.unwrap().is_ok());
        }
        assert!(throttle.check("bob", ip).await.unwrap().is_ok());
        throttle.success("bob", ip).await.unwrap();
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
