//! Password hashing with argon2id (RustCrypto `argon2`), at the parameters
//! OWASP's Password Storage Cheat Sheet recommends (m = 19 MiB, t = 2, p = 1).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Hashing failed (the OS random generator, or parameters out of range), or
/// [`PasswordWorkers`] had too many passwords waiting to take another.
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
/// It blocks for tens of milliseconds: in async code use
/// [`PasswordWorkers::verify`] with `None`.
pub fn verify_dummy(password: &str) {
    let _ = verify_password(password, dummy_hash());
}

/// A real hash with the default parameters, made once per process.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("keycard dummy password").unwrap_or_default())
}

/// The largest argon2 memory cost (in KiB) a stored hash may ask a worker
/// for: a hash from a stronger configuration verifies, a hostile one cannot
/// make a worker allocate without bound.
const MAX_MEMORY_KIB: u32 = 256 * 1024;

/// One worker's argon2 state, reused from call to call: a fresh 19 MiB
/// allocation per call is what makes the allocator hold on to memory.
struct Argon2Memory {
    blocks: Vec<argon2::Block>,
}

impl Argon2Memory {
    fn blocks(&mut self, params: &argon2::Params) -> Option<&mut [argon2::Block]> {
        if params.m_cost() > MAX_MEMORY_KIB {
            return None;
        }
        let count = params.block_count();
        if self.blocks.len() < count {
            self.blocks.resize(count, argon2::Block::default());
        }
        self.blocks.get_mut(..count)
    }

    fn hash(&mut self, password: &str) -> Result<String, PasswordError> {
        use argon2::password_hash::{Output, ParamsString};
        let params = argon2::Params::default();
        let salt_bytes: [u8; 16] = crate::random_bytes().map_err(|_| PasswordError)?;
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|_| PasswordError)?;
        let argon = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params.clone(),
        );
        let mut out = [0u8; argon2::Params::DEFAULT_OUTPUT_LEN];
        let memory = self.blocks(&params).ok_or(PasswordError)?;
        argon
            .hash_password_into_with_memory(password.as_bytes(), &salt_bytes, &mut out, memory)
            .map_err(|_| PasswordError)?;
        let hash = PasswordHash {
            algorithm: argon2::Algorithm::Argon2id.ident(),
            version: Some(argon2::Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(|_| PasswordError)?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(|_| PasswordError)?),
        };
        Ok(hash.to_string())
    }

    fn verify(&mut self, password: &str, phc: &str) -> bool {
        use subtle::ConstantTimeEq;
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        let (Ok(algorithm), Ok(params)) = (
            argon2::Algorithm::try_from(parsed.algorithm),
            argon2::Params::try_from(&parsed),
        ) else {
            return false;
        };
        let version = match parsed.version.map(argon2::Version::try_from) {
            Some(Ok(version)) => version,
            Some(Err(_)) => return false,
            None => argon2::Version::default(),
        };
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return false;
        };
        let mut salt_buffer = [0u8; 64];
        let Ok(salt_bytes) = salt.decode_b64(&mut salt_buffer) else {
            return false;
        };
        let argon = Argon2::new(algorithm, version, params.clone());
        let mut out = vec![0u8; expected.len()];
        let Some(memory) = self.blocks(&params) else {
            return false;
        };
        if argon
            .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, memory)
            .is_err()
        {
            return false;
        }
        bool::from(expected.as_bytes().ct_eq(&out))
    }
}

type Job = Box<dyn FnOnce(&mut Argon2Memory) + Send>;

/// Runs password hashing on a fixed set of threads (one per core by default).
///
/// argon2id takes tens of milliseconds and 19 MiB per call by design. On the
/// async runtime's blocking pool, a burst of logins would start hundreds of
/// threads at once, each leaving its 19 MiB in its own allocator arena
/// (resident memory grows by hundreds of MiB and stays), and starve every
/// other request of CPU. A fixed pool queues the burst instead.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use keycard::auth::PasswordWorkers;
/// let workers = PasswordWorkers::new(2);
/// let hash = workers.hash("correct horse").await.unwrap();
/// assert!(workers.verify("correct horse", Some(hash)).await.unwrap());
/// assert!(!workers.verify("correct horse", None).await.unwrap()); // unknown user: same work, no match
/// # }
/// ```
#[derive(Clone)]
pub struct PasswordWorkers {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

impl PasswordWorkers {
    /// A pool of `threads` threads (at least one).
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(1024);
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("keycard-password-{i}"))
                .spawn(move || {
                    if i == 0 {
                        // Made at start rather than by the first unknown-user
                        // login, which would otherwise take twice as long as a
                        // wrong-password one (a login in the first few tens of
                        // milliseconds still waits for it).
                        dummy_hash();
                    }
                    let mut memory = Argon2Memory { blocks: Vec::new() };
                    loop {
                        let job = match queue.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return,
                        }
                    }
                });
            if spawned.is_err() {
                tracing::error!(target: "keycard", "could not start a password hashing thread");
            }
        }
        PasswordWorkers { jobs }
    }

    /// One thread per core.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Argon2Memory) -> T + Send + 'static,
    ) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = done.send(work(memory));
        });
        // Over 1024 waiting: refuse (fail closed) rather than queue without bound.
        self.jobs.try_send(job).ok()?;
        result.await.ok()
    }

    /// [`hash_password`] on the pool.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_owned();
        self.run(move |memory| memory.hash(&password))
            .await
            .unwrap_or(Err(PasswordError))
    }

    /// [`verify_password`] on the pool; with no hash (an unknown user) it
    /// spends the same time on a dummy hash and answers `false`.
    ///
    /// `Err` when the pool is overloaded (over 1024 passwords waiting) or
    /// gone: answer 503, not "wrong password" (the password may be right).
    pub async fn verify(
        &self,
        password: &str,
        hash: Option<String>,
    ) -> Result<bool, PasswordError> {
        let password = password.to_owned();
        self.run(move |memory| match hash {
            Some(hash) => memory.verify(&password, &hash),
            None => {
                // The same work on a real hash, for unknown users (timing).
                let _ = memory.verify(&password, dummy_hash());
                false
            }
        })
        .await
        .ok_or(PasswordError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pool_that_takes_no_more_is_an_error_not_a_wrong_password() {
        // No room in the queue and no thread to take the job: as when 1024
        // passwords are already waiting.
        let (jobs, _queue) = std::sync::mpsc::sync_channel::<Job>(0);
        let full = PasswordWorkers { jobs };
        assert!(full
            .verify("right", Some(dummy_hash().to_owned()))
            .await
            .is_err());
        assert!(full.hash("new password").await.is_err());
    }

    #[tokio::test]
    async fn workers_and_plain_functions_agree() {
        let workers = PasswordWorkers::new(1);
        let pooled = workers.hash("pw one").await.unwrap();
        assert!(verify_password("pw one", &pooled));
        assert!(!verify_password("pw two", &pooled));
        let plain = hash_password("pw one").unwrap();
        assert!(workers.verify("pw one", Some(plain.clone())).await.unwrap());
        assert!(!workers.verify("pw two", Some(plain)).await.unwrap());
        assert!(!workers
            .verify("pw one", Some("garbage".into()))
            .await
            .unwrap());
        assert!(!workers.verify("pw one", None).await.unwrap());
        // A hostile hash asking for a huge memory cost is refused, not honoured.
        let huge = "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$4WcRZkY/QnPiaZBOhGmjrtOQwjAxvR5eVuohU46TFvk";
        assert!(!workers.verify("x", Some(huge.into())).await.unwrap());
    }
}
