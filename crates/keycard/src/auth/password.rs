//! Password hashing with argon2id (RustCrypto `argon2`), at the parameters
//! OWASP's Password Storage Cheat Sheet recommends (m = 19 MiB, t = 2, p = 1).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Hashing failed (the OS random generator, or parameters out of range).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct PasswordError;

/// Hashes a password into a PHC string (`$argon2id$v=19$...`) with a fresh salt.
///
/// ```
/// use keycard::auth::{hash_password, verify_password};
/// let hash = hash_password("correct horse").unwrap();
/// assert!(verify_password("correct horse", &hash));
/// assert!(!verify_password("wrong", &hash));
/// ```
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt_bytes: [u8; 16] = crate::random_bytes().map_err(|_| PasswordError)?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|_| PasswordError)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| PasswordError)
}

/// Checks a password against a PHC hash (constant-time comparison inside
/// `argon2`). A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the same time as [`verify_password`] on a real hash, for an unknown
/// user: so "no such user" and "wrong password" cannot be told apart by timing.
pub fn verify_dummy(password: &str) {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    // Hashed once per process, with the same parameters as real hashes.
    let dummy = DUMMY.get_or_init(|| hash_password("keycard dummy password").ok());
    if let Some(hash) = dummy {
        let _ = verify_password(password, hash);
    }
}
