//! The key ring: the master keys cookies are sealed and signed with.
//!
//! A [`KeyRing`] holds one or more 32-byte master keys, each with a small
//! numeric ID that travels in every sealed or signed value. The newest key (the
//! last one listed) seals; every listed key opens. Rotating is therefore two
//! steps that never log anyone out:
//!
//! 1. [`rotate`](KeyRing::rotate) (or add a line to the file): new cookies are
//!    sealed with the new key, old cookies still open and are resealed with
//!    the new key on their next response ([`Opened::stale_key`](crate::Opened)).
//! 2. Once the old cookies have had time to be resealed or to expire (the
//!    longest cookie lifetime, e.g. 30 days for remember-me), remove the old key.
//!    A cookie still sealed with it is then rejected as
//!    [`CodecError::UnknownKey`](crate::CodecError::UnknownKey).
//!
//! Master keys are never used directly: each codec derives its own subkey per
//! purpose (`session`, `remember`, `csrf`, `bearer`, `signed`, ...) with
//! HKDF-SHA256 (RFC 5869), so a value made for one purpose or one codec can
//! never be accepted by another.
//!
//! # The key file
//!
//! UTF-8 text, one key per line, oldest first; the last key is the newest:
//!
//! ```text
//! # keycard key ring: <id> <key>, oldest first; the last key seals.
//! 1 m4bA1vO3zgR1qgM0mFq2o4gS7lq8hKqQ9Z0m1l5Gx3E
//! 2 0y7bQm3lJgZ3o2mC5c9mZ2Qk8S4x1m7n0p4r6t8v2wA
//! ```
//!
//! - `<id>`: a decimal number in `0..=65535`, unique within the ring;
//! - `<key>`: 32 random bytes, unpadded base64url (43 characters);
//! - blank lines and lines starting with `#` are ignored; leading and trailing
//!   spaces are trimmed; anything else is an error naming the line (the line's
//!   content is never repeated in the error: it may hold a key).
//!
//! # The environment variable
//!
//! The same keys as a list of `<id>:<key>` entries separated by commas or
//! whitespace, oldest first, e.g. `KEYCARD_KEYS=1:m4bA...,2:0y7b...`
//! ([`KeyRing::to_env_value`] writes it).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use sha2::Sha256;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use zeroize::Zeroizing;

/// The length of a master key and of every derived key, in bytes.
pub const KEY_LEN: usize = 32;

/// HKDF salt: fixes the derivation to keycard's first key-ring format.
const HKDF_SALT: &[u8] = b"keycard key ring v1";

/// Who a subkey is for. Each codec has its own label, so the sealed and the
/// signed codec never share a key even when given the same purpose string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyUse {
    /// [`SealedCodec`](super::SealedCodec): AES-256-GCM.
    Sealed,
    /// [`SignedCodec`](super::SignedCodec): HMAC-SHA256.
    Signed,
    /// [`KeyRing::derive`]: keys handed to application code.
    Application,
}

impl KeyUse {
    fn label(self) -> &'static [u8] {
        match self {
            KeyUse::Sealed => b"keycard/sealed/aes-256-gcm",
            KeyUse::Signed => b"keycard/signed/hmac-sha256",
            KeyUse::Application => b"keycard/application",
        }
    }
}

/// Why a key ring could not be loaded or changed.
///
/// Messages name the line or entry and what is wrong with it, never its
/// content (it may hold a key).
///
/// ```
/// use keycard::codec::{KeyRing, KeyRingError};
/// let err = KeyRing::parse("1 not-a-key\n").unwrap_err();
/// assert!(matches!(err, KeyRingError::BadKey { line: 1, .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRingError {
    /// The file or variable holds no key.
    #[error("the key ring holds no key")]
    Empty,
    /// A line (or entry of the environment variable) is not `<id> <key>`.
    #[error("key ring line {line}: {reason}")]
    Syntax {
        /// 1-based line number (entry number for an environment variable).
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key ID is not a decimal number in `0..=65535`.
    #[error("key ring line {line}: the key id is not a number in 0..=65535")]
    BadId {
        /// 1-based line number (entry number for an environment variable).
        line: usize,
    },
    /// A key is not 32 bytes of unpadded base64url.
    #[error("key ring line {line}: {reason}")]
    BadKey {
        /// 1-based line number (entry number for an environment variable).
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two keys share an ID.
    #[error("key ring line {line}: key id {id} is listed twice")]
    DuplicateId {
        /// 1-based line number of the second occurrence.
        line: usize,
        /// The repeated ID.
        id: u16,
    },
    /// The key file could not be read or written.
    #[error("key ring file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The environment variable is unset or not Unicode.
    #[error("environment variable {0} is unset or not valid Unicode")]
    MissingEnv(String),
    /// No ID is left for a new key (the newest already has ID 65535).
    #[error("no key id left: the ring already uses id 65535")]
    IdsExhausted,
    /// The ID names no key in the ring.
    #[error("no key with id {0} in the ring")]
    UnknownId(u16),
    /// Removing the key would leave the ring empty.
    #[error("the last key of a ring cannot be removed")]
    LastKey,
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,
}

/// One master key and its ID. The bytes are wiped from memory on drop.
#[derive(Clone)]
struct MasterKey {
    id: u16,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

/// One or more 32-byte master keys; the newest (last) seals, every listed key
/// opens. See the [module documentation](self) for the file format.
///
/// `Debug` prints the key IDs, never key bytes.
///
/// ```
/// use keycard::codec::KeyRing;
/// let mut ring = KeyRing::generate()?;
/// let new_id = ring.rotate()?;
/// assert_eq!(ring.newest_id(), new_id);
/// assert_eq!(ring.ids().count(), 2);
///
/// let reloaded = KeyRing::parse(&ring.to_file_string())?;
/// assert_eq!(reloaded.ids().collect::<Vec<_>>(), ring.ids().collect::<Vec<_>>());
/// assert_eq!(format!("{ring:?}"), format!("KeyRing {{ ids: [1, {new_id}], newest: {new_id}, .. }}"));
/// # Ok::<(), keycard::codec::KeyRingError>(())
/// ```
#[derive(Clone)]
pub struct KeyRing {
    /// Oldest first; never empty.
    keys: Vec<MasterKey>,
}

impl KeyRing {
    /// A ring with one fresh key (ID 1) from the OS CSPRNG.
    ///
    /// ```
    /// use keycard::codec::KeyRing;
    /// let ring = KeyRing::generate()?;
    /// assert_eq!(ring.newest_id(), 1);
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn generate() -> Result<Self, KeyRingError> {
        Ok(KeyRing {
            keys: vec![MasterKey {
                id: 1,
                bytes: fresh_key()?,
            }],
        })
    }

    /// A ring from `(id, key)` pairs, oldest first. Fails on an empty list or
    /// a repeated ID (reported as [`KeyRingError::DuplicateId`] with the
    /// 1-based position of the repeat).
    ///
    /// ```
    /// use keycard::codec::KeyRing;
    /// let ring = KeyRing::from_keys([(7, [1u8; 32]), (8, [2u8; 32])])?;
    /// assert_eq!(ring.newest_id(), 8);
    /// assert!(KeyRing::from_keys([(7, [1u8; 32]), (7, [2u8; 32])]).is_err());
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn from_keys(
        keys: impl IntoIterator<Item = (u16, [u8; KEY_LEN])>,
    ) -> Result<Self, KeyRingError> {
        let mut ring = Vec::new();
        for (index, (id, bytes)) in keys.into_iter().enumerate() {
            push_unique(&mut ring, index + 1, id, Zeroizing::new(bytes))?;
        }
        if ring.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(KeyRing { keys: ring })
    }

    /// Parses the key file format (see the [module documentation](self)).
    ///
    /// ```
    /// use keycard::codec::KeyRing;
    /// let text = "# comment\n\n3 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n";
    /// assert_eq!(KeyRing::parse(text)?.newest_id(), 3);
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, KeyRingError> {
        let mut keys = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let mut fields = trimmed.split_whitespace();
            let (Some(id), Some(key), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(KeyRingError::Syntax {
                    line,
                    reason: "expected `<id> <base64url key>`",
                });
            };
            let id = parse_id(id, line)?;
            let key = parse_key(key, line)?;
            push_unique(&mut keys, line, id, key)?;
        }
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(KeyRing { keys })
    }

    /// Reads and parses a key file.
    ///
    /// On Unix, a file readable by group or others is loaded but logged as a
    /// warning (`keycard::security`): the keys forge every session.
    ///
    /// ```no_run
    /// use keycard::codec::KeyRing;
    /// let ring = KeyRing::from_file("/etc/keycard/keys")?;
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyRingError> {
        let path = path.as_ref();
        let io = |source| KeyRingError::Io {
            path: path.to_owned(),
            source,
        };
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(target: "keycard::security", event = "key_file_permissions", path = %path.display(), mode = format_args!("{:o}", mode & 0o777), "key ring file is readable by other users; chmod 600 it");
            }
        }
        Self::parse(&text)
    }

    /// Writes [`to_file_string`](Self::to_file_string) to `path`, replacing
    /// it; a new file is created readable by its owner only (mode 0600 on Unix).
    ///
    /// ```no_run
    /// use keycard::codec::KeyRing;
    /// KeyRing::generate()?.write_file("keycard-data/keys")?;
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<(), KeyRingError> {
        use std::io::Write;
        let path = path.as_ref();
        let io = |source| KeyRingError::Io {
            path: path.to_owned(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        let text = Zeroizing::new(self.to_file_string());
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Loads the key file at `path`, or, when there is none, generates a ring
    /// and writes it there (mode 0600 on Unix), as a server does on first start.
    ///
    /// Safe when several processes start at once with the same path: the new
    /// file appears complete or not at all (written aside, then hard-linked
    /// into place, which fails if the file exists), and every process ends up
    /// with the ring that won. The parent directory must exist.
    ///
    /// ```no_run
    /// use keycard::codec::KeyRing;
    /// let ring = KeyRing::load_or_generate("keycard-data/keys")?;
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn load_or_generate(path: impl AsRef<Path>) -> Result<Self, KeyRingError> {
        let path = path.as_ref();
        match Self::from_file(path) {
            Err(KeyRingError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            loaded => return loaded,
        }
        let ring = Self::generate()?;
        let suffix = crate::random_bytes::<8>().map_err(|_| KeyRingError::Random)?;
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(".{}.tmp", URL_SAFE_NO_PAD.encode(suffix)));
        let aside = PathBuf::from(aside);
        ring.write_file(&aside)?;
        let linked = std::fs::hard_link(&aside, path);
        // The link (if any) keeps the content; the aside name goes either way.
        let _ = std::fs::remove_file(&aside);
        match linked {
            Ok(()) => Ok(ring),
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::from_file(path),
            Err(source) => Err(KeyRingError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Reads the ring from the environment variable `var` (see
    /// [`from_env_value`](Self::from_env_value) for the format).
    ///
    /// ```no_run
    /// use keycard::codec::KeyRing;
    /// let ring = KeyRing::from_env("KEYCARD_KEYS")?;
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn from_env(var: &str) -> Result<Self, KeyRingError> {
        let value = std::env::var(var).map_err(|_| KeyRingError::MissingEnv(var.to_owned()))?;
        Self::from_env_value(&Zeroizing::new(value))
    }

    /// Parses a list of `<id>:<key>` entries separated by commas or
    /// whitespace, oldest first. Errors name the 1-based entry as `line`.
    ///
    /// ```
    /// use keycard::codec::KeyRing;
    /// let ring = KeyRing::generate()?;
    /// let again = KeyRing::from_env_value(&ring.to_env_value())?;
    /// assert_eq!(again.newest_id(), ring.newest_id());
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn from_env_value(value: &str) -> Result<Self, KeyRingError> {
        let mut keys = Vec::new();
        let entries = value.split(|c: char| c == ',' || c.is_whitespace());
        for (index, entry) in entries.filter(|e| !e.is_empty()).enumerate() {
            let line = index + 1;
            let Some((id, key)) = entry.split_once(':') else {
                return Err(KeyRingError::Syntax {
                    line,
                    reason: "expected `<id>:<base64url key>`",
                });
            };
            let id = parse_id(id, line)?;
            let key = parse_key(key, line)?;
            push_unique(&mut keys, line, id, key)?;
        }
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(KeyRing { keys })
    }

    /// The key file text: a comment header, then `<id> <key>` lines, oldest
    /// first. [`parse`](Self::parse) reads it back.
    ///
    /// ```
    /// use keycard::codec::KeyRing;
    /// let text = KeyRing::from_keys([(1, [0u8; 32])])?.to_file_string();
    /// assert!(text.ends_with("1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"));
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn to_file_string(&self) -> String {
        let mut out = String::from(
            "# keycard key ring: <id> <base64url key>, oldest first; the last key seals.\n\
             # Anyone holding these keys can forge any session: keep this file private.\n",
        );
        for key in &self.keys {
            out.push_str(&key.id.to_string());
            out.push(' ');
            out.push_str(&URL_SAFE_NO_PAD.encode(*key.bytes));
            out.push('\n');
        }
        out
    }

    /// The ring as an environment variable value: `<id>:<key>` entries
    /// separated by commas, oldest first.
    ///
    /// ```
    /// use keycard::codec::KeyRing;
    /// let ring = KeyRing::from_keys([(1, [0u8; 32]), (2, [0u8; 32])])?;
    /// assert_eq!(ring.to_env_value().matches(',').count(), 1);
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn to_env_value(&self) -> String {
        let entries: Vec<String> = self
            .keys
            .iter()
            .map(|key| format!("{}:{}", key.id, URL_SAFE_NO_PAD.encode(*key.bytes)))
            .collect();
        entries.join(",")
    }

    /// Adds a fresh key as the newest, with ID one above the highest in the
    /// ring, and returns that ID. Codecs built before the call keep the keys
    /// they were built with: build them again to seal with the new key.
    ///
    /// ```
    /// use keycard::codec::KeyRing;
    /// let mut ring = KeyRing::from_keys([(4, [0u8; 32])])?;
    /// assert_eq!(ring.rotate()?, 5);
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn rotate(&mut self) -> Result<u16, KeyRingError> {
        let highest = self.keys.iter().map(|k| k.id).max().unwrap_or(0);
        let id = highest.checked_add(1).ok_or(KeyRingError::IdsExhausted)?;
        self.keys.push(MasterKey {
            id,
            bytes: fresh_key()?,
        });
        Ok(id)
    }

    /// Removes the key with `id`; values it sealed are then rejected as
    /// [`UnknownKey`](crate::CodecError::UnknownKey). The last key cannot be
    /// removed.
    ///
    /// ```
    /// use keycard::codec::KeyRing;
    /// let mut ring = KeyRing::generate()?;
    /// let old = ring.newest_id();
    /// ring.rotate()?;
    /// ring.remove(old)?;
    /// assert_eq!(ring.ids().count(), 1);
    /// assert!(ring.remove(ring.newest_id()).is_err());
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn remove(&mut self, id: u16) -> Result<(), KeyRingError> {
        let index = self
            .keys
            .iter()
            .position(|k| k.id == id)
            .ok_or(KeyRingError::UnknownId(id))?;
        if self.keys.len() == 1 {
            return Err(KeyRingError::LastKey);
        }
        self.keys.remove(index);
        Ok(())
    }

    /// The ID of the newest key: the one that seals.
    ///
    /// ```
    /// use keycard::codec::KeyRing;
    /// assert_eq!(KeyRing::from_keys([(9, [0u8; 32]), (2, [1u8; 32])])?.newest_id(), 2);
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn newest_id(&self) -> u16 {
        self.keys.last().map_or(0, |k| k.id)
    }

    /// The key IDs, oldest first.
    ///
    /// ```
    /// use keycard::codec::KeyRing;
    /// let ring = KeyRing::from_keys([(1, [0u8; 32]), (2, [1u8; 32])])?;
    /// assert_eq!(ring.ids().collect::<Vec<_>>(), [1, 2]);
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.keys.iter().map(|k| k.id)
    }

    /// Application subkeys for `purpose` (e.g. a CSRF token's HMAC key), one
    /// per master key, oldest first: use the last to make a value and accept
    /// any. They are derived with HKDF-SHA256 under a label of their own, so
    /// they never equal the subkeys keycard's codecs use.
    ///
    /// ```
    /// use keycard::codec::KeyRing;
    /// let ring = KeyRing::generate()?;
    /// let csrf = ring.derive("csrf");
    /// assert_eq!(csrf.len(), 1);
    /// assert_ne!(csrf[0].as_bytes(), ring.derive("bearer")[0].as_bytes());
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn derive(&self, purpose: &str) -> Vec<DerivedKey> {
        self.subkeys(KeyUse::Application, purpose)
    }

    /// Subkeys for one codec and purpose, oldest first.
    pub(crate) fn subkeys(&self, key_use: KeyUse, purpose: &str) -> Vec<DerivedKey> {
        self.keys
            .iter()
            .map(|master| DerivedKey {
                id: master.id,
                bytes: hkdf(master, key_use, purpose),
            })
            .collect()
    }
}

impl FromStr for KeyRing {
    type Err = KeyRingError;

    /// Same as [`KeyRing::parse`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .field("newest", &self.newest_id())
            .finish_non_exhaustive()
    }
}

/// A 32-byte key derived from one master key for one purpose, with that
/// master key's ID. The bytes are wiped from memory on drop; `Debug` shows
/// only the ID.
///
/// ```
/// use keycard::codec::KeyRing;
/// let ring = KeyRing::from_keys([(3, [7u8; 32])])?;
/// let key = &ring.derive("csrf")[0];
/// assert_eq!(key.id(), 3);
/// assert_eq!(format!("{key:?}"), "DerivedKey { id: 3, .. }");
/// # Ok::<(), keycard::codec::KeyRingError>(())
/// ```
#[derive(Clone)]
pub struct DerivedKey {
    id: u16,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl DerivedKey {
    /// The ID of the master key this was derived from.
    ///
    /// ```
    /// # use keycard::codec::KeyRing;
    /// let ring = KeyRing::generate()?;
    /// assert_eq!(ring.derive("x")[0].id(), ring.newest_id());
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The key bytes.
    ///
    /// ```
    /// # use keycard::codec::KeyRing;
    /// let ring = KeyRing::generate()?;
    /// assert_eq!(ring.derive("x")[0].as_bytes().len(), 32);
    /// # Ok::<(), keycard::codec::KeyRingError>(())
    /// ```
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DerivedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn hkdf(master: &MasterKey, key_use: KeyUse, purpose: &str) -> Zeroizing<[u8; KEY_LEN]> {
    let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), master.bytes.as_slice());
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    // Labels hold no NUL byte, so `label NUL purpose` names one (use, purpose)
    // pair only: purpose "a" of one codec can never collide with another's.
    let info = [key_use.label(), b"\0", purpose.as_bytes()];
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot
    // fail; the fallback (an all-zero key) is unreachable.
    if hk.expand_multi_info(&info, out.as_mut_slice()).is_err() {
        tracing::error!(target: "keycard", "HKDF expand failed for a 32-byte key");
    }
    out
}

fn fresh_key() -> Result<Zeroizing<[u8; KEY_LEN]>, KeyRingError> {
    crate::random_bytes::<KEY_LEN>()
        .map(Zeroizing::new)
        .map_err(|_| KeyRingError::Random)
}

fn parse_id(text: &str, line: usize) -> Result<u16, KeyRingError> {
    // `u16::from_str` accepts a leading `+`; the format does not.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KeyRingError::BadId { line });
    }
    text.parse().map_err(|_| KeyRingError::BadId { line })
}

fn parse_key(text: &str, line: usize) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyRingError> {
    let decoded =
        Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(text)
                .map_err(|_| KeyRingError::BadKey {
                    line,
                    reason: "the key is not unpadded base64url",
                })?,
        );
    let bytes: [u8; KEY_LEN] = decoded
        .as_slice()
        .try_into()
        .map_err(|_| KeyRingError::BadKey {
            line,
            reason: "the key is not 32 bytes (43 base64url characters)",
        })?;
    Ok(Zeroizing::new(bytes))
}

fn push_unique(
    keys: &mut Vec<MasterKey>,
    line: usize,
    id: u16,
    bytes: Zeroizing<[u8; KEY_LEN]>,
) -> Result<(), KeyRingError> {
    if keys.iter().any(|k| k.id == id) {
        return Err(KeyRingError::DuplicateId { line, id });
    }
    keys.push(MasterKey { id, bytes });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const KEY_B: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";

    #[test]
    fn parses_comments_blank_lines_and_order() {
        let text = format!("# header\n\n  1 {KEY_A}  \n# more\n2\t{KEY_B}\n");
        let ring = KeyRing::parse(&text).unwrap();
        assert_eq!(ring.ids().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(ring.newest_id(), 2);
        let again = KeyRing::parse(&ring.to_file_string()).unwrap();
        assert_eq!(again.to_file_string(), ring.to_file_string());
    }

    #[test]
    fn rejects_bad_files_precisely() {
        type Check = fn(&KeyRingError) -> bool;
        let cases: Vec<(String, Check)> = vec![
            (String::new(), |e| matches!(e, KeyRingError::Empty)),
            ("# only a comment\n".into(), |e| {
                matches!(e, KeyRingError::Empty)
            }),
            (format!("1 {KEY_A}\n{KEY_B}\n"), |e| {
                matches!(e, KeyRingError::Syntax { line: 2, .. })
            }),
            (format!("1 {KEY_A} extra\n"), |e| {
                matches!(e, KeyRingError::Syntax { line: 1, .. })
            }),
            (format!("x {KEY_A}\n"), |e| {
                matches!(e, KeyRingError::BadId { line: 1 })
            }),
            (format!("+1 {KEY_A}\n"), |e| {
                matches!(e, KeyRingError::BadId { line: 1 })
            }),
            (format!("65536 {KEY_A}\n"), |e| {
                matches!(e, KeyRingError::BadId { line: 1 })
            }),
            ("1 AAAA\n".into(), |e| {
                matches!(e, KeyRingError::BadKey { line: 1, .. })
            }),
            (format!("1 {KEY_A}=\n"), |e| {
                matches!(e, KeyRingError::BadKey { line: 1, .. })
            }),
            (format!("1 {}\n", KEY_A.replace('A', "+")), |e| {
                matches!(e, KeyRingError::BadKey { line: 1, .. })
            }),
            (format!("1 {KEY_A}\n\n1 {KEY_B}\n"), |e| {
                matches!(e, KeyRingError::DuplicateId { line: 3, id: 1 })
            }),
        ];
        for (text, expected) in cases {
            let err = KeyRing::parse(&text).unwrap_err();
            assert!(expected(&err), "{text:?} gave {err:?}");
            assert!(!err.to_string().contains(KEY_B), "error repeats the key");
        }
    }

    #[test]
    fn env_value_round_trips_and_rejects_bad_entries() {
        let ring = KeyRing::parse(&format!("1 {KEY_A}\n2 {KEY_B}\n")).unwrap();
        assert_eq!(ring.to_env_value(), format!("1:{KEY_A},2:{KEY_B}"));
        let spaced = KeyRing::from_env_value(&format!(" 1:{KEY_A}\n 2:{KEY_B} ")).unwrap();
        assert_eq!(spaced.ids().collect::<Vec<_>>(), [1, 2]);
        assert!(matches!(
            KeyRing::from_env_value(""),
            Err(KeyRingError::Empty)
        ));
        assert!(matches!(
            KeyRing::from_env_value(&format!("1:{KEY_A},{KEY_B}")),
            Err(KeyRingError::Syntax { line: 2, .. })
        ));
        assert!(matches!(
            KeyRing::from_env("KEYCARD_TEST_SURELY_UNSET_VARIABLE"),
            Err(KeyRingError::MissingEnv(_))
        ));
    }

    #[test]
    fn rotate_remove_and_limits() {
        let mut ring = KeyRing::from_keys([(65534, [0; 32])]).unwrap();
        assert_eq!(ring.rotate().unwrap(), 65535);
        assert!(matches!(ring.rotate(), Err(KeyRingError::IdsExhausted)));
        assert!(matches!(ring.remove(3), Err(KeyRingError::UnknownId(3))));
        ring.remove(65534).unwrap();
        assert!(matches!(ring.remove(65535), Err(KeyRingError::LastKey)));
        assert!(matches!(KeyRing::from_keys([]), Err(KeyRingError::Empty)));
    }

    #[test]
    fn subkeys_differ_by_use_purpose_and_master_key() {
        let ring = KeyRing::parse(&format!("1 {KEY_A}\n2 {KEY_B}\n")).unwrap();
        let sealed = ring.subkeys(KeyUse::Sealed, "session");
        let signed = ring.subkeys(KeyUse::Signed, "session");
        let remember = ring.subkeys(KeyUse::Sealed, "remember");
        let app = ring.derive("session");
        assert_ne!(sealed[0].as_bytes(), sealed[1].as_bytes());
        assert_ne!(sealed[1].as_bytes(), signed[1].as_bytes());
        assert_ne!(sealed[1].as_bytes(), remember[1].as_bytes());
        assert_ne!(sealed[1].as_bytes(), app[1].as_bytes());
        assert_ne!(sealed[0].as_bytes(), &[0u8; 32]);
        // Deterministic: the same ring derives the same keys.
        let again = KeyRing::parse(&ring.to_file_string()).unwrap();
        assert_eq!(
            again.subkeys(KeyUse::Sealed, "session")[1].as_bytes(),
            sealed[1].as_bytes()
        );
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let ring = KeyRing::parse(&format!("1 {KEY_A}\n2 {KEY_B}\n")).unwrap();
        let debug = format!("{ring:?} {:?}", ring.derive("csrf"));
        assert_eq!(
            debug,
            "KeyRing { ids: [1, 2], newest: 2, .. } [DerivedKey { id: 1, .. }, DerivedKey { id: 2, .. }]"
        );
    }

    #[test]
    fn load_or_generate_agrees_across_racing_starts() {
        let dir = std::env::temp_dir().join(format!("keycard-race-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        let _ = std::fs::remove_file(&path);
        let rings: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| KeyRing::load_or_generate(&path).unwrap().to_file_string()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            rings.iter().all(|r| *r == rings[0]),
            "processes disagree on the key ring"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), rings[0]);
        // Only the key file is left: no aside copies.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        // A bad file is an error, never silently replaced.
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(matches!(
            KeyRing::load_or_generate(&path),
            Err(KeyRingError::Syntax { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_round_trip_on_disk() {
        let dir = std::env::temp_dir().join(format!("keycard-keyring-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        let _ = std::fs::remove_file(&path);
        let ring = KeyRing::generate().unwrap();
        ring.write_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0);
        }
        let loaded = KeyRing::from_file(&path).unwrap();
        assert_eq!(loaded.to_file_string(), ring.to_file_string());
        assert!(matches!(
            KeyRing::from_file(dir.join("missing")),
            Err(KeyRingError::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
