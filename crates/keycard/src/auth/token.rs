//! Bearer tokens for API clients.
//!
//! A token is a session of its own: a 256-bit random ID the client sends as
//! `Authorization: Bearer`, filed in the store under its SHA-256 like any
//! session, marked `bearer`, with the user and their auth hash, and a fixed
//! lifetime. So it is hashed at rest, expires, and is revoked by deleting it;
//! "log out everywhere" and password changes reach it through the user index.

use super::handle::{hash_of, LoginInfo};
use super::AuthUser;
use crate::session::timed;
use crate::{
    now_millis, reserved, ClientDetails, CreateError, Record, SessionConfig, SessionError,
    SessionId, SessionStore,
};
use serde_json::Value;

pub(crate) async fn issue<U: AuthUser>(
    config: &SessionConfig,
    store: &dyn SessionStore,
    user: &U,
    lifetime: std::time::Duration,
    client: &ClientDetails,
) -> Result<String, SessionError> {
    let now = now_millis();
    let ttl = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
    let mut record = Record::new(now, ttl, ttl);
    record.user_id = Some(user.id());
    record.ip.clone_from(&client.ip);
    record.user_agent.clone_from(&client.user_agent);
    record
        .data
        .insert(reserved::KIND.into(), Value::from("bearer"));
    let info = LoginInfo {
        hash: hash_of(user),
        login_at: now,
        fresh: false,
        via: "token".into(),
    };
    record.data.insert(
        reserved::AUTH.into(),
        serde_json::to_value(info).map_err(SessionError::Serialize)?,
    );
    for _ in 0..3 {
        let id = SessionId::generate()?;
        match timed(config, store.create(&id.key(), &record)).await {
            Ok(()) => return Ok(id.to_string()),
            Err(CreateError::DuplicateKey) => continue,
            Err(CreateError::Store(error)) => return Err(error.into()),
        }
    }
    Err(crate::RandomError.into())
}
