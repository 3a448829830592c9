//! Command-line flags, each also an environment variable `KEYCARD_<FLAG>`.

use clap::Parser;
use keycard::BindIp;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// keycard-demo: the keycard reference web app. Serves HTTPS (with a
/// self-signed development certificate made on first start unless
/// --tls-cert/--tls-key are given) and a plain-HTTP listener that only
/// redirects to HTTPS.
#[derive(Debug, Parser)]
#[command(name = "keycard-demo", version, about, long_about = None)]
pub struct Args {
    /// Address of the HTTPS listener.
    #[arg(long, env = "KEYCARD_HTTPS", default_value = "127.0.0.1:8443")]
    pub https: SocketAddr,

    /// Address of the plain-HTTP listener (redirects to HTTPS only).
    #[arg(long, env = "KEYCARD_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,

    /// Directory for the default SQLite stores, the key file and the development certificate.
    #[arg(long, env = "KEYCARD_DATA_DIR", default_value = "./keycard-data")]
    pub data_dir: PathBuf,

    /// Session store: sqlite:PATH (default: DATA_DIR/sessions.db), memory,
    /// redis://HOST:PORT, redis+cluster://H:P,H:P, postgres://..., or cookie
    /// (sealed client-side sessions; revocations kept in the --users database,
    /// so processes sharing accounts share them).
    #[arg(long, env = "KEYCARD_STORE", value_parser = parse_store)]
    pub store: Option<String>,

    /// Idle timeout, e.g. 90s, 30m, 8h.
    #[arg(long, env = "KEYCARD_IDLE_TIMEOUT", default_value = "30m", value_parser = parse_duration, allow_hyphen_values = true)]
    pub idle_timeout: Duration,

    /// Absolute timeout from login, e.g. 8h.
    #[arg(long, env = "KEYCARD_ABSOLUTE_TIMEOUT", default_value = "8h", value_parser = parse_duration, allow_hyphen_values = true)]
    pub absolute_timeout: Duration,

    /// Bind sessions to the client address: off, subnet (/24, /64) or exact.
    #[arg(long, env = "KEYCARD_BIND_IP", default_value = "off", value_parser = parse_bind_ip)]
    pub bind_ip: BindIp,

    /// A proxy network whose Forwarded / X-Forwarded-For headers are trusted (repeatable).
    #[arg(long = "trusted-proxy", env = "KEYCARD_TRUSTED_PROXY", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxy: Vec<ipnet::IpNet>,

    /// TLS certificate chain (PEM). Requires --tls-key.
    #[arg(long, env = "KEYCARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM). Requires --tls-cert.
    #[arg(long, env = "KEYCARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The key ring file (made on first start if missing). Default: DATA_DIR/keys.
    #[arg(long, env = "KEYCARD_KEYS")]
    pub keys: Option<PathBuf>,

    /// Where accounts live: sqlite:PATH (default: DATA_DIR/users.db) or postgres://...
    #[arg(long, env = "KEYCARD_USERS", value_parser = parse_users)]
    pub users: Option<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = keycard::parse_duration(text)?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

fn parse_bind_ip(text: &str) -> Result<BindIp, String> {
    text.parse()
}

fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is not an address or CIDR network such as 10.0.0.0/8"))
}

fn parse_store(text: &str) -> Result<String, String> {
    let ok = text == "memory"
        || text == "cookie"
        || text.starts_with("sqlite:")
        || text.starts_with("redis://")
        || text.starts_with("rediss://")
        || text.starts_with("redis+cluster://")
        || text.starts_with("postgres://")
        || text.starts_with("postgresql://");
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!("`{text}` is not a store URL (sqlite:PATH, memory, redis://..., redis+cluster://..., postgres://..., cookie)"))
    }
}

fn parse_users(text: &str) -> Result<String, String> {
    if text.starts_with("sqlite:")
        || text.starts_with("postgres://")
        || text.starts_with("postgresql://")
    {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not a users URL (sqlite:PATH or postgres://...)"
        ))
    }
}
