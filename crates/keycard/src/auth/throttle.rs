//! Login throttling per account and per source address, with exponential
//! lockouts, kept in the session store so every server process shares it.

use crate::session::timed;
use crate::{
    now_millis, reserved, ApplyOutcome, Change, CreateError, Record, SessionConfig, SessionKey,
    SessionStore, StoreError, Update,
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

/// Counts failed logins per account and per address.
///
/// After `per_account` failures for one account within `window` (from any
/// address), the account is locked for `lockout`, doubling with each further
/// lockout within a day (capped at one hour); likewise after `per_address`
/// failures from one address. An IPv6 "address" is its /64 network: one
/// subscriber holds a whole /64 and could otherwise try from 2^64 addresses.
/// While locked, even the right password waits: check [`check`](Self::check)
/// before verifying the password.
///
/// ```no_run
/// # async fn demo(store: std::sync::Arc<dyn keycard::SessionStore>) -> Result<(), keycard::StoreError> {
/// use keycard::auth::LoginThrottle;
/// let throttle = LoginThrottle::new(store);
/// if let Err(throttled) = throttle.check("alice", Some("192.0.2.1")).await? {
///     println!("retry after {:?}", throttled.retry_after);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LoginThrottle {
    store: Arc<dyn SessionStore>,
    config: SessionConfig,
    /// Failures per account before a lockout. Default: 10.
    pub per_account: i64,
    /// Failures per source address before a lockout. Default: 50.
    pub per_address: i64,
    /// The window failures are counted in. Default: 15 minutes.
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
const MAX_LOCK_MS: i64 = 3600 * 1000;

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

    fn keys(username: &str, ip: Option<&str>) -> [(Option<SessionKey>, bool); 2] {
        [
            (
                Some(SessionKey::derive(
                    "throttle-account",
                    &username.to_lowercase(),
                )),
                true,
            ),
            (
                ip.map(|ip| SessionKey::derive("throttle-address", &address_group(ip))),
                false,
            ),
        ]
    }

    /// `Err(Throttled)` if the account or the address is locked now.
    pub async fn check(
        &self,
        username: &str,
        ip: Option<&str>,
    ) -> Result<Result<(), Throttled>, StoreError> {
        let now = now_millis();
        let mut wait = 0;
        for (key, _) in Self::keys(username, ip) {
            let Some(key) = key else { continue };
            if let Some(record) = timed(&self.config, self.store.load(&key)).await? {
                let until = record
                    .data
                    .get("locked_until")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                wait = wait.max(until - now);
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

    /// Records a failed attempt.
    pub async fn failure(&self, username: &str, ip: Option<&str>) -> Result<(), StoreError> {
        for (key, is_account) in Self::keys(username, ip) {
            let Some(key) = key else { continue };
            let limit = if is_account {
                self.per_account
            } else {
                self.per_address
            };
            self.count(&key, limit).await?;
        }
        Ok(())
    }

    /// Records a successful login: the account's failure count starts again.
    pub async fn success(&self, username: &str) -> Result<(), StoreError> {
        let key = SessionKey::derive("throttle-account", &username.to_lowercase());
        let Some(record) = timed(&self.config, self.store.load(&key)).await? else {
            return Ok(());
        };
        let update = self.update(
            &record,
            vec![Change::Set {
                key: "fails".into(),
                value: Value::from(0),
            }],
        );
        timed(&self.config, self.store.apply(&key, &update))
            .await
            .map(|_| ())
    }

    fn update(&self, _record: &Record, changes: Vec<Change>) -> Update {
        Update::lasting(changes, now_millis(), DAY_MS)
    }

    async fn count(&self, key: &SessionKey, limit: i64) -> Result<(), StoreError> {
        let now = now_millis();
        let window = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        let record = match timed(&self.config, self.store.load(key)).await? {
            Some(record) if !record.is_expired(now) => record,
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
                record
            }
        };
        let started = record
            .data
            .get("window_start")
            .and_then(Value::as_i64)
            .unwrap_or(now);
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
        if timed(
            &self.config,
            self.store.apply(key, &self.update(&record, changes)),
        )
        .await?
            == ApplyOutcome::Gone
        {
            return Ok(());
        }
        let Some(after) = timed(&self.config, self.store.load(key)).await? else {
            return Ok(());
        };
        let fails = after.data.get("fails").and_then(Value::as_i64).unwrap_or(0);
        if fails >= limit {
            let lockouts = after
                .data
                .get("lockouts")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let base = i64::try_from(self.lockout.as_millis()).unwrap_or(MAX_LOCK_MS);
            let lock = base
                .saturating_mul(1 << lockouts.clamp(0, 20))
                .min(MAX_LOCK_MS);
            tracing::warn!(target: "keycard::security", event = "login_throttled", lockouts = lockouts + 1, lock_ms = lock, "too many failed logins; locked");
            let changes = vec![
                Change::Set {
                    key: "locked_until".into(),
                    value: Value::from(now + lock),
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
            timed(
                &self.config,
                self.store.apply(key, &self.update(&after, changes)),
            )
            .await?;
        }
        Ok(())
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
            throttle
                .failure(&format!("user{i}"), Some(&ip))
                .await
                .unwrap();
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
