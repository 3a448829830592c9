//! What a store keeps for one session, and the changes a request makes to it.

use crate::SessionKey;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) mod format;

/// Milliseconds since the Unix epoch: every timestamp in a [`Record`].
pub type UnixMillis = i64;

/// The current time in [`UnixMillis`].
pub fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The version of the record format [`Record::encode`] writes (its first
/// byte). Version 2 is binary; [`Record::decode`] still reads version 1
/// (JSON), so cookies sealed by an earlier release stay valid.
pub const RECORD_FORMAT_VERSION: u8 = format::VERSION;

/// One session as a store keeps it.
///
/// `data` holds the application's values (and keycard's own, under keys that
/// start with `keycard.`); the rest is metadata the store indexes or expires on.
///
/// ```
/// use keycard::Record;
/// let record = Record::new(1_000, 60_000, 3_600_000);
/// assert_eq!(record.expires_at(), 61_000);
/// assert!(!record.is_expired(60_999));
/// assert!(record.is_expired(61_000));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Application data, one JSON value per key.
    pub data: Map<String, Value>,
    /// The logged-in user, if any: stores index sessions by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// When the session was created.
    pub created_at: UnixMillis,
    /// When a request last moved the idle deadline.
    pub last_seen: UnixMillis,
    /// The session ends at this time unless used again (sliding).
    pub idle_deadline: UnixMillis,
    /// The session ends at this time whatever happens (from creation or login).
    pub absolute_deadline: UnixMillis,
    /// The client's address at login, or at creation when the binding
    /// compares addresses (an anonymous session keeps none otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The client's User-Agent at login, or at creation when the binding
    /// compares user agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl Record {
    /// An empty record created at `now` with the given idle and absolute timeouts.
    pub fn new(now: UnixMillis, idle_ms: i64, absolute_ms: i64) -> Self {
        let absolute_deadline = now.saturating_add(absolute_ms);
        Record {
            data: Map::new(),
            user_id: None,
            created_at: now,
            last_seen: now,
            idle_deadline: now.saturating_add(idle_ms).min(absolute_deadline),
            absolute_deadline,
            ip: None,
            user_agent: None,
        }
    }

    /// The earlier of the two deadlines: when a store may forget the record.
    pub fn expires_at(&self) -> UnixMillis {
        self.idle_deadline.min(self.absolute_deadline)
    }

    /// Whether the record is past either deadline at `now`.
    pub fn is_expired(&self, now: UnixMillis) -> bool {
        now >= self.expires_at()
    }

    /// Applies an update in place, exactly as a store must (the reference semantics).
    pub fn apply(&mut self, update: &Update) {
        for change in &update.changes {
            change.apply_to(&mut self.data);
        }
        if let Some(user) = &update.user_id {
            self.user_id.clone_from(user);
        }
        if let Some(client) = &update.client {
            self.ip.clone_from(&client.ip);
            self.user_agent.clone_from(&client.user_agent);
        }
        self.last_seen = update.last_seen;
        self.idle_deadline = update.idle_deadline;
        self.absolute_deadline = update.absolute_deadline;
    }

    /// The listing entry for this record.
    pub fn summary(&self, key: SessionKey) -> SessionSummary {
        SessionSummary {
            key,
            user_id: self.user_id.clone(),
            created_at: self.created_at,
            last_seen: self.last_seen,
            idle_deadline: self.idle_deadline,
            absolute_deadline: self.absolute_deadline,
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            kind: self
                .data
                .get(crate::reserved::KIND)
                .and_then(Value::as_str)
                .unwrap_or("session")
                .to_owned(),
        }
    }

    /// Encodes the record in the versioned storage format (a version byte,
    /// then, in version 2, the deadlines as varints, the strings, and the data
    /// as JSON; see [`RECORD_FORMAT_VERSION`]).
    ///
    /// ```
    /// use keycard::{Record, RECORD_FORMAT_VERSION};
    /// let record = Record::new(1_000, 60_000, 3_600_000);
    /// let bytes = record.encode();
    /// assert_eq!(bytes[0], RECORD_FORMAT_VERSION);
    /// assert_eq!(Record::decode(&bytes)?, record);
    /// # Ok::<(), keycard::StoreError>(())
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        format::encode(self)
    }

    /// Decodes [`encode`](Self::encode) output, of this version or an
    /// earlier one. A corrupt or unknown-version record is an error, which
    /// the session layer treats as no session.
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::StoreError> {
        format::decode(bytes)
    }
}

/// One per-key change to a session's data.
///
/// Stores apply a request's changes atomically and in order, so two requests
/// that change different keys both keep their change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// Set `key` to `value`.
    Set {
        /// The key.
        key: String,
        /// Its new value.
        value: Value,
    },
    /// Remove `key`.
    Remove {
        /// The key.
        key: String,
    },
    /// Remove every key.
    Clear,
    /// Add `by` to the integer at `key` (a missing or non-integer value counts
    /// as 0), atomically in the store: concurrent increments are never lost.
    Increment {
        /// The key.
        key: String,
        /// The amount, may be negative.
        by: i64,
    },
}

impl Change {
    /// Applies the change to a data map (the reference semantics).
    pub fn apply_to(&self, data: &mut Map<String, Value>) {
        match self {
            Change::Set { key, value } => {
                data.insert(key.clone(), value.clone());
            }
            Change::Remove { key } => {
                data.remove(key);
            }
            Change::Clear => data.clear(),
            Change::Increment { key, by } => {
                let current = data.get(key).and_then(Value::as_i64).unwrap_or(0);
                data.insert(key.clone(), Value::from(current.saturating_add(*by)));
            }
        }
    }
}

/// The client details a login records for binding and for the sessions list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientDetails {
    /// The client's address.
    pub ip: Option<String>,
    /// The client's User-Agent.
    pub user_agent: Option<String>,
}

/// What one request changes in a stored session: its data changes, and the
/// deadlines it moves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// Per-key changes, in order.
    pub changes: Vec<Change>,
    /// `Some` to set (or with `Some(None)`, clear) the logged-in user.
    pub user_id: Option<Option<String>>,
    /// `Some` to record new client details (at login).
    pub client: Option<ClientDetails>,
    /// The new last-seen time.
    pub last_seen: UnixMillis,
    /// The new idle deadline.
    pub idle_deadline: UnixMillis,
    /// The absolute deadline (moved only at login).
    pub absolute_deadline: UnixMillis,
}

impl Update {
    /// Data changes that keep the record alive for `lifetime_ms` from `now`
    /// (both deadlines), as keycard's own records (remember-me series,
    /// throttle counters, revocation markers) are kept.
    ///
    /// ```
    /// use keycard::{Change, Update};
    /// let update = Update::lasting(vec![Change::Clear], 1_000, 60_000);
    /// assert_eq!((update.idle_deadline, update.absolute_deadline), (61_000, 61_000));
    /// ```
    pub fn lasting(changes: Vec<Change>, now: UnixMillis, lifetime_ms: i64) -> Self {
        let until = now.saturating_add(lifetime_ms);
        Update {
            changes,
            user_id: None,
            client: None,
            last_seen: now,
            idle_deadline: until,
            absolute_deadline: until,
        }
    }

    /// Data changes that leave `record`'s deadlines and `last_seen` as they
    /// are (what [`SessionStore::apply_and_load`](crate::SessionStore::apply_and_load)
    /// applies).
    ///
    /// ```
    /// use keycard::{Record, Update};
    /// let record = Record::new(0, 1_000, 5_000);
    /// let update = Update::keeping_deadlines(vec![], &record);
    /// assert_eq!((update.idle_deadline, update.absolute_deadline), (1_000, 5_000));
    /// ```
    pub fn keeping_deadlines(changes: Vec<Change>, record: &Record) -> Self {
        Update {
            changes,
            user_id: None,
            client: None,
            last_seen: record.last_seen,
            idle_deadline: record.idle_deadline,
            absolute_deadline: record.absolute_deadline,
        }
    }

    /// The earlier of the two deadlines.
    pub fn expires_at(&self) -> UnixMillis {
        self.idle_deadline.min(self.absolute_deadline)
    }

    /// Whether the update changes only deadlines (a touch).
    pub fn is_touch(&self) -> bool {
        self.changes.is_empty() && self.user_id.is_none() && self.client.is_none()
    }
}

/// What [`apply`](crate::SessionStore::apply) found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The update was applied.
    Applied,
    /// There is no such record (deleted, expired or never created); nothing was
    /// written, and the record was not brought back.
    Gone,
}

/// One entry of a user's session list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// The store key (not a secret). [`SessionKey::handle`] gives a short public name.
    #[serde(with = "key_hex")]
    pub key: SessionKey,
    /// The logged-in user.
    pub user_id: Option<String>,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Last time a request moved the idle deadline.
    pub last_seen: UnixMillis,
    /// The idle deadline.
    pub idle_deadline: UnixMillis,
    /// The absolute deadline.
    pub absolute_deadline: UnixMillis,
    /// The client's address at login.
    pub ip: Option<String>,
    /// The client's User-Agent at login.
    pub user_agent: Option<String>,
    /// `session`, or what keycard filed it as (`remember`, `bearer`, ...).
    pub kind: String,
}

mod key_hex {
    use crate::SessionKey;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &SessionKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&key.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SessionKey, D::Error> {
        let text = String::deserialize(d)?;
        SessionKey::from_hex(&text).ok_or_else(|| serde::de::Error::custom("bad session key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_round_trips_and_rejects_garbage() {
        let mut record = Record::new(5, 10, 20);
        record.data.insert("a".into(), Value::from(1));
        record.user_id = Some("u".into());
        assert_eq!(Record::decode(&record.encode()).unwrap(), record);
        assert!(Record::decode(b"").is_err());
        assert!(Record::decode(b"\x01{").is_err());
        assert!(Record::decode(b"\x02{").is_err());
        assert!(Record::decode(b"\x09{}").is_err());
    }

    #[test]
    fn increment_treats_missing_and_non_integers_as_zero() {
        let mut data = Map::new();
        Change::Increment {
            key: "n".into(),
            by: 2,
        }
        .apply_to(&mut data);
        Change::Increment {
            key: "n".into(),
            by: 3,
        }
        .apply_to(&mut data);
        assert_eq!(data["n"], Value::from(5));
        data.insert("s".into(), Value::from("x"));
        Change::Increment {
            key: "s".into(),
            by: 1,
        }
        .apply_to(&mut data);
        assert_eq!(data["s"], Value::from(1));
    }
}
