//! Remember-me tokens: a long-lived `selector:validator` cookie.
//!
//! Only a SHA-256 of the validator is stored, under a key derived from the
//! selector, so a leaked store opens nothing. Every use rotates the validator;
//! presenting a validator the series no longer accepts means someone else
//! used the token first (it was copied), so every session, remember token
//! and API token of the user is revoked (theft detection: tokens too, since
//! whoever restored the login first could have minted one). An application may let the
//! previous validator stay valid for a short grace period
//! ([`AuthConfig::remember_grace`](crate::auth::AuthConfig::remember_grace),
//! zero by default) so a request of the same browser sent before the new
//! cookie arrived does not look like theft. Requests that present the current
//! value at the same moment rotate it once (see `restore`).

use super::data_number;
use crate::session::timed;
use crate::{
    now_millis, reserved, Change, Record, SessionConfig, SessionKey, SessionStore, StoreError,
    Update,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub(crate) enum Restored {
    /// The token is good: log `user_id` in; set the cookie to the new value if any.
    User {
        user_id: String,
        new_cookie: Option<String>,
    },
    /// No such series (expired, revoked, garbage): ignore the cookie.
    Invalid,
    /// A stale validator for a live series: the token was stolen.
    Theft { user_id: String },
}

fn series_key(selector: &str) -> SessionKey {
    SessionKey::derive("remember", selector)
}

fn digest(validator: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(validator))
}

fn parse(cookie: &str) -> Option<(&str, Vec<u8>)> {
    let (selector, validator) = cookie.split_once(':')?;
    if selector.len() != 22
        || !selector
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let validator = URL_SAFE_NO_PAD
        .decode(validator)
        .ok()
        .filter(|v| v.len() == 32)?;
    Some((selector, validator))
}

fn lifetime_ms(lifetime: std::time::Duration) -> i64 {
    i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX)
}

/// Starts a new series for `user_id`; returns the cookie value.
pub(crate) async fn issue(
    config: &SessionConfig,
    store: &dyn SessionStore,
    user_id: &str,
    lifetime: std::time::Duration,
    client: &crate::ClientDetails,
) -> Result<String, crate::SessionError> {
    let selector = URL_SAFE_NO_PAD.encode(crate::random_bytes::<16>()?);
    let validator = crate::random_bytes::<32>()?;
    let ttl = lifetime_ms(lifetime);
    let mut record = Record::new(now_millis(), ttl, ttl);
    record.user_id = Some(user_id.to_owned());
    record.ip.clone_from(&client.ip);
    record.user_agent.clone_from(&client.user_agent);
    record
        .data
        .insert(reserved::KIND.into(), Value::from("remember"));
    record
        .data
        .insert("v".into(), Value::from(digest(&validator)));
    match timed(config, store.create(&series_key(&selector), &record)).await {
        Ok(()) => Ok(format!("{selector}:{}", URL_SAFE_NO_PAD.encode(validator))),
        // 128 random bits collided: the random generator is broken.
        Err(crate::CreateError::DuplicateKey) => Err(crate::RandomError.into()),
        Err(crate::CreateError::Store(error)) => Err(error.into()),
    }
}

/// How long a claimed rotation keeps other requests with the same value from
/// rotating it too (it normally completes within one store call).
const CLAIM_MS: i64 = 10_000;

/// Checks a presented cookie and rotates it.
pub(crate) async fn restore(
    config: &SessionConfig,
    store: &dyn SessionStore,
    cookie: &str,
    lifetime: std::time::Duration,
    grace: std::time::Duration,
) -> Result<Restored, crate::SessionError> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let Some((selector, validator)) = parse(cookie) else {
        return Ok(Restored::Invalid);
    };
    let key = series_key(selector);
    let now = now_millis();
    let Some(record) = timed(config, store.load(&key)).await? else {
        return Ok(Restored::Invalid);
    };
    let (Some(user_id), false) = (record.user_id.clone(), record.is_expired(now)) else {
        return Ok(Restored::Invalid);
    };
    let presented = digest(&validator);
    let matches = |field: &str| {
        record
            .data
            .get(field)
            .and_then(Value::as_str)
            .is_some_and(|stored| bool::from(stored.as_bytes().ct_eq(presented.as_bytes())))
    };
    if matches("v") {
        // Requests that present the current value at the same moment (tabs
        // restoring together) must not each rotate it: the browser could keep
        // a value the store no longer holds, and its next use would look like
        // theft. Each rotation first claims the next generation with an
        // atomic increment; only the request whose claim lands on the
        // generation it loaded + 1 rotates, the others log in and leave the
        // cookie to it. A claim not yet followed by its new value (a claimed
        // generation ahead of the value's) counts for CLAIM_MS.
        let loaded = data_number(&record, "gen");
        let in_progress = data_number(&record, "v_gen") != loaded
            && now.saturating_sub(data_number(&record, "claimed_at")) < CLAIM_MS;
        let won = !in_progress && {
            let claim = [
                Change::Increment {
                    key: "gen".into(),
                    by: 1,
                },
                Change::Set {
                    key: "claimed_at".into(),
                    value: Value::from(now),
                },
            ];
            match timed(config, store.apply_and_load(&key, &claim, now)).await? {
                Some(claimed) => data_number(&claimed, "gen") == loaded.saturating_add(1),
                None => return Ok(Restored::Invalid),
            }
        };
        if !won {
            return Ok(Restored::User {
                user_id,
                new_cookie: None,
            });
        }
        let next = crate::random_bytes::<32>()?;
        let ttl = lifetime_ms(lifetime);
        let mut changes = vec![
            Change::Set {
                key: "v".into(),
                value: Value::from(digest(&next)),
            },
            Change::Set {
                key: "v_gen".into(),
                value: Value::from(loaded.saturating_add(1)),
            },
        ];
        if grace_ms > 0 {
            changes.push(Change::Set {
                key: "prev".into(),
                value: Value::from(presented),
            });
            changes.push(Change::Set {
                key: "prev_until".into(),
                value: Value::from(now.saturating_add(grace_ms)),
            });
        }
        let update = Update::lasting(changes, now, ttl);
        return Ok(match timed(config, store.apply(&key, &update)).await? {
            crate::ApplyOutcome::Applied => Restored::User {
                user_id,
                new_cookie: Some(format!("{selector}:{}", URL_SAFE_NO_PAD.encode(next))),
            },
            crate::ApplyOutcome::Gone => Restored::Invalid,
        });
    }
    let in_grace = record
        .data
        .get("prev_until")
        .and_then(Value::as_i64)
        .is_some_and(|until| now < until);
    if in_grace && matches("prev") {
        // A parallel request of the same browser: the new cookie is on its way.
        return Ok(Restored::User {
            user_id,
            new_cookie: None,
        });
    }
    Ok(Restored::Theft { user_id })
}

/// Deletes the series a cookie names (at logout).
pub(crate) async fn forget(
    config: &SessionConfig,
    store: &dyn SessionStore,
    cookie: &str,
) -> Result<(), StoreError> {
    match parse(cookie) {
        Some((selector, _)) => timed(config, store.delete(&series_key(selector))).await,
        None => Ok(()),
    }
}

/// The store key of the series a cookie names.
pub(crate) fn key_of(cookie: &str) -> Option<SessionKey> {
    parse(cookie).map(|(selector, _)| series_key(selector))
}
