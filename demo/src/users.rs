//! Accounts: a users table in SQLite (the default) or PostgreSQL, and the
//! keycard `AuthBackend` over it.

use async_trait::async_trait;
use keycard::auth::{AuthBackend, AuthUser, PasswordWorkers};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One account.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub username: String,
    pub password_hash: String,
}

impl AuthUser for User {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn auth_hash(&self) -> Vec<u8> {
        // A new password means a new salted hash: every older session ends.
        self.password_hash.as_bytes().to_vec()
    }
}

/// What a login form submits.
pub struct Credentials {
    pub username: String,
    pub password: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("users database: {0}")]
    Database(String),
    #[error("username already taken")]
    Taken,
    #[error("password hashing failed")]
    Hash,
}

#[derive(Clone)]
enum Db {
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Postgres(deadpool_postgres::Pool),
}

/// The accounts database.
#[derive(Clone)]
pub struct Users {
    db: Db,
    /// Password hashing runs on one thread per core, so a login flood queues
    /// instead of growing memory and starving every other request.
    passwords: PasswordWorkers,
}

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);";

const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keycard_demo_users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS keycard_demo_users_username ON keycard_demo_users (lower(username));";

fn db_error(error: impl std::fmt::Display) -> UsersError {
    UsersError::Database(error.to_string())
}

impl Users {
    /// Opens `sqlite:PATH` or `postgres://...`, creating the table if needed.
    pub async fn open(url: &str) -> Result<Self, UsersError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = Path::new(path).to_owned();
            let connection =
                tokio::task::spawn_blocking(move || -> Result<rusqlite::Connection, UsersError> {
                    // A missing directory is a typo (a second process would
                    // quietly get accounts of its own), not a place to make.
                    // The file holds password hashes: readable by its owner
                    // alone (SQLite gives its -wal and -shm files the same).
                    let mut create = std::fs::OpenOptions::new();
                    create.write(true).create_new(true);
                    #[cfg(unix)]
                    std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
                    match create.open(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                            return Err(db_error(e))
                        }
                        _ => {}
                    }
                    let connection = rusqlite::Connection::open(&path).map_err(db_error)?;
                    connection
                        .busy_timeout(std::time::Duration::from_secs(5))
                        .map_err(db_error)?;
                    connection
                        .pragma_update(None, "journal_mode", "WAL")
                        .map_err(db_error)?;
                    connection.execute_batch(SQLITE_SCHEMA).map_err(db_error)?;
                    Ok(connection)
                })
                .await
                .map_err(db_error)??;
            return Ok(Users {
                db: Db::Sqlite(Arc::new(Mutex::new(connection))),
                passwords: PasswordWorkers::per_core(),
            });
        }
        let config: tokio_postgres::Config = url.parse().map_err(db_error)?;
        let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(8)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(2)))
            .create_timeout(Some(std::time::Duration::from_secs(2)))
            .build()
            .map_err(db_error)?;
        let client = pool.get().await.map_err(db_error)?;
        client
            .batch_execute(POSTGRES_SCHEMA)
            .await
            .map_err(db_error)?;
        Ok(Users {
            db: Db::Postgres(pool),
            passwords: PasswordWorkers::per_core(),
        })
    }

    async fn sqlite<T: Send + 'static>(
        connection: &Arc<Mutex<rusqlite::Connection>>,
        work: impl FnOnce(&rusqlite::Connection) -> Result<T, UsersError> + Send + 'static,
    ) -> Result<T, UsersError> {
        let connection = connection.clone();
        tokio::task::spawn_blocking(move || {
            let connection = connection
                .lock()
                .map_err(|_| UsersError::Database("lock poisoned".into()))?;
            work(&connection)
        })
        .await
        .map_err(db_error)?
    }

    /// Finds a user by name (case-insensitive).
    pub async fn by_name(&self, username: &str) -> Result<Option<User>, UsersError> {
        self.find("username", username).await
    }

    /// Finds a user by ID.
    pub async fn by_id(&self, id: &str) -> Result<Option<User>, UsersError> {
        self.find("id", id).await
    }

    async fn find(&self, column: &'static str, value: &str) -> Result<Option<User>, UsersError> {
        let value = value.to_owned();
        match &self.db {
            Db::Sqlite(connection) => {
                Self::sqlite(connection, move |c| {
                    let sql = format!(
                        "SELECT id, username, password_hash FROM users WHERE {column} = ?1"
                    );
                    let mut statement = c.prepare_cached(&sql).map_err(db_error)?;
                    let mut rows = statement.query([&value]).map_err(db_error)?;
                    match rows.next().map_err(db_error)? {
                        Some(row) => Ok(Some(User {
                            id: row.get(0).map_err(db_error)?,
                            username: row.get(1).map_err(db_error)?,
                            password_hash: row.get(2).map_err(db_error)?,
                        })),
                        None => Ok(None),
                    }
                })
                .await
            }
            Db::Postgres(pool) => {
                let client = pool.get().await.map_err(db_error)?;
                let sql = match column {
                    "username" => "SELECT id, username, password_hash FROM keycard_demo_users WHERE lower(username) = lower($1)",
                    _ => "SELECT id, username, password_hash FROM keycard_demo_users WHERE id = $1",
                };
                let row = client.query_opt(sql, &[&value]).await.map_err(db_error)?;
                Ok(row.map(|row| User {
                    id: row.get(0),
                    username: row.get(1),
                    password_hash: row.get(2),
                }))
            }
        }
    }

    /// Creates an account.
    pub async fn create(&self, username: &str, password: &str) -> Result<User, UsersError> {
        let password_hash = self
            .passwords
            .hash(password)
            .await
            .map_err(|_| UsersError::Hash)?;
        let id_bytes: [u8; 16] = keycard::random_bytes().map_err(|_| UsersError::Hash)?;
        let id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
        let user = User {
            id,
            username: username.to_owned(),
            password_hash,
        };
        let now = keycard::now_millis();
        match &self.db {
            Db::Sqlite(connection) => {
                let row = user.clone();
                Self::sqlite(connection, move |c| {
                    match c.execute(
                        "INSERT INTO users (id, username, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                        rusqlite::params![row.id, row.username, row.password_hash, now],
                    ) {
                        Ok(_) => Ok(()),
                        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => Err(UsersError::Taken),
                        Err(e) => Err(db_error(e)),
                    }
                })
                .await?;
            }
            Db::Postgres(pool) => {
                let client = pool.get().await.map_err(db_error)?;
                let result = client
                    .execute(
                        "INSERT INTO keycard_demo_users (id, username, password_hash, created_at) VALUES ($1, $2, $3, $4)",
                        &[&user.id, &user.username, &user.password_hash, &now],
                    )
                    .await;
                match result {
                    Ok(_) => {}
                    Err(e)
                        if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
                    {
                        return Err(UsersError::Taken)
                    }
                    Err(e) => return Err(db_error(e)),
                }
            }
        }
        Ok(user)
    }

    /// Sets a new password; returns the updated user.
    pub async fn set_password(&self, user: &User, password: &str) -> Result<User, UsersError> {
        let password_hash = self
            .passwords
            .hash(password)
            .await
            .map_err(|_| UsersError::Hash)?;
        let (id, hash) = (user.id.clone(), password_hash.clone());
        match &self.db {
            Db::Sqlite(connection) => {
                Self::sqlite(connection, move |c| {
                    c.execute(
                        "UPDATE users SET password_hash = ?1 WHERE id = ?2",
                        rusqlite::params![hash, id],
                    )
                    .map_err(db_error)
                    .map(|_| ())
                })
                .await?;
            }
            Db::Postgres(pool) => {
                let client = pool.get().await.map_err(db_error)?;
                client
                    .execute(
                        "UPDATE keycard_demo_users SET password_hash = $1 WHERE id = $2",
                        &[&hash, &id],
                    )
                    .await
                    .map_err(db_error)?;
            }
        }
        Ok(User {
            password_hash,
            ..user.clone()
        })
    }

    /// Checks a password for a user, spending the same time whether or not
    /// the user exists.
    pub async fn check(&self, username: &str, password: &str) -> Result<Option<User>, UsersError> {
        let user = self.by_name(username).await?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let matches = self
            .passwords
            .verify(password, hash)
            .await
            .map_err(|_| UsersError::Hash)?;
        Ok(user.filter(|_| matches))
    }

    /// The time a password check takes, spent on no user (for a login form
    /// with a missing or oversized field, so it answers as slowly as any).
    pub async fn check_nobody(&self, password: &str) -> Result<(), UsersError> {
        self.passwords
            .verify(password, None)
            .await
            .map(|_| ())
            .map_err(|_| UsersError::Hash)
    }
}

#[async_trait]
impl AuthBackend for Users {
    type User = User;
    type Credentials = Credentials;
    type Error = UsersError;

    async fn authenticate(&self, credentials: Credentials) -> Result<Option<User>, UsersError> {
        self.check(&credentials.username, &credentials.password)
            .await
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<User>, UsersError> {
        self.by_id(user_id).await
    }
}
