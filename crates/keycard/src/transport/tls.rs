//! Serving an axum app over HTTPS with rustls (feature `tls`).

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// A TLS certificate chain and its private key.
pub struct TlsIdentity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl TlsIdentity {
    /// Reads PEM files: a certificate chain and a private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> io::Result<Self> {
        Self::from_pem(&std::fs::read(cert)?, &std::fs::read(key)?)
    }

    /// Parses PEM text.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> io::Result<Self> {
        let certs = rustls_pemfile::certs(&mut &cert[..]).collect::<Result<Vec<_>, _>>()?;
        if certs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no certificate in the PEM file",
            ));
        }
        let key = rustls_pemfile::private_key(&mut &key[..])?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "no private key in the PEM file")
        })?;
        Ok(TlsIdentity { certs, key })
    }

    /// Loads the development certificate from `dir`, first making one (self
    /// signed, for `localhost`, `127.0.0.1` and `::1`) if there is none.
    ///
    /// `key.pem` (mode 0600) holds the private key and its certificate, so
    /// the pair can never be mismatched; `cert.pem` is a copy of the
    /// certificate for clients to trust, rewritten if it is missing or stale.
    /// Processes that start together on an empty `dir` agree on one pair: the
    /// first to link its complete key file in place wins, the others load it.
    /// A `key.pem` holding only a key (from earlier releases) is used with
    /// the `cert.pem` beside it.
    pub fn development(dir: &Path) -> io::Result<Self> {
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        if !key_path.exists() {
            std::fs::create_dir_all(dir)?;
            let names = vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ];
            let certified = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
            let pair = format!(
                "{}{}",
                certified.key_pair.serialize_pem(),
                certified.cert.pem()
            );
            let aside = aside_path(dir, "key.pem")?;
            write_private(&aside, pair.as_bytes())?;
            // A hard link never replaces a file, and the file it links is
            // already complete: one process's pair wins, whole.
            let claimed = match std::fs::hard_link(&aside, &key_path) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    // No hard links here (some network or FAT file systems):
                    // an atomic rename; racing starts may then differ, but
                    // each file on disk is a whole pair.
                    std::fs::rename(&aside, &key_path)
                }
                other => other,
            };
            let _ = std::fs::remove_file(&aside);
            match claimed {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        let key_file = std::fs::read(&key_path)?;
        let Some(cert_pem) = certificate_block(&key_file) else {
            return Self::from_pem_files(&cert_path, &key_path);
        };
        let identity = Self::from_pem(&key_file, &key_file)?;
        if std::fs::read(&cert_path).ok().as_deref() != Some(cert_pem) {
            let aside = aside_path(dir, "cert.pem")?;
            std::fs::write(&aside, cert_pem)?;
            std::fs::rename(&aside, &cert_path)?;
        }
        Ok(identity)
    }

    /// A rustls acceptor offering HTTP/2 and HTTP/1.1 (ALPN).
    pub fn acceptor(self) -> io::Result<TlsAcceptor> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(self.certs, self.key)
            .map_err(io::Error::other)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// A fresh name in `dir` to write `name` under before moving it in place.
fn aside_path(dir: &Path, name: &str) -> io::Result<std::path::PathBuf> {
    let suffix: String = crate::random_bytes::<8>()
        .map_err(io::Error::other)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(dir.join(format!("{name}.{suffix}.tmp")))
}

/// The first `CERTIFICATE` PEM block of `pem`, with its newline.
fn certificate_block(pem: &[u8]) -> Option<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let start = pem.windows(BEGIN.len()).position(|w| w == BEGIN)?;
    let end = start + pem[start..].windows(END.len()).position(|w| w == END)? + END.len();
    let end = if pem.get(end) == Some(&b'\n') {
        end + 1
    } else {
        end
    };
    pem.get(start..end)
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents)
}

/// Serves `app` on `listener`, over TLS when `tls` is given, until `shutdown`
/// resolves; then stops accepting and lets open connections finish (at most
/// 10 seconds). Each request carries `ConnectInfo<SocketAddr>`. Header blocks
/// up to `max_header_bytes` are read in full (HTTP/1 and HTTP/2), so a
/// [`HeaderLimitLayer`](super::HeaderLimitLayer) with a smaller limit answers
/// oversized ones itself, with the app's headers (HSTS); beyond it the
/// connection layer refuses them.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    max_header_bytes: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: back off, keep serving.
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            () = &mut shutdown => break,
        };
        let app =
            app.clone()
                .map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                });
        let service = hyper_util::service::TowerToHyperService::new(app);
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .max_buf_size(max_header_bytes.max(8192))
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
        builder
            .http2()
            .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await
                    else {
                        return;
                    };
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let _ = watcher.watch(connection).await;
                }
                None => {
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let _ = watcher.watch(connection).await;
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn racing_starts_agree_on_one_development_certificate() {
        let dir = std::env::temp_dir().join(format!("keycard-tls-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let certs: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| TlsIdentity::development(&dir).unwrap().certs[0].to_vec()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(certs.iter().all(|c| *c == certs[0]), "starts disagree");
        // What is on disk is that pair, it matches (rustls accepts it), and
        // no aside files are left.
        let loaded = TlsIdentity::development(&dir).unwrap();
        assert_eq!(loaded.certs[0].to_vec(), certs[0]);
        loaded.acceptor().unwrap();
        assert_eq!(files(&dir), ["cert.pem", "key.pem"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_stale_or_missing_cert_pem_is_rewritten_from_the_key_file() {
        let dir = std::env::temp_dir().join(format!("keycard-tls-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = TlsIdentity::development(&dir).unwrap();
        let old_cert = std::fs::read(dir.join("cert.pem")).unwrap();
        // Another pair's key is gone, its certificate left behind.
        std::fs::remove_file(dir.join("key.pem")).unwrap();
        let second = TlsIdentity::development(&dir).unwrap();
        assert_ne!(second.certs[0].to_vec(), first.certs[0].to_vec());
        let exported = std::fs::read(dir.join("cert.pem")).unwrap();
        assert_ne!(exported, old_cert, "the stale certificate is replaced");
        let from_disk = TlsIdentity::from_pem(&exported, &exported[..0]);
        assert!(from_disk.is_err(), "cert.pem holds no key");
        let exported_cert = rustls_pemfile::certs(&mut &exported[..])
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(exported_cert.to_vec(), second.certs[0].to_vec());
        // cert.pem deleted: made again, the same pair is served.
        std::fs::remove_file(dir.join("cert.pem")).unwrap();
        let third = TlsIdentity::development(&dir).unwrap();
        assert_eq!(third.certs[0].to_vec(), second.certs[0].to_vec());
        assert_eq!(std::fs::read(dir.join("cert.pem")).unwrap(), exported);
        assert_eq!(files(&dir), ["cert.pem", "key.pem"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_key_only_key_file_from_earlier_releases_is_used_with_its_cert_pem() {
        let dir = std::env::temp_dir().join(format!("keycard-tls-legacy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        write_private(
            &dir.join("key.pem"),
            certified.key_pair.serialize_pem().as_bytes(),
        )
        .unwrap();
        std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
        let loaded = TlsIdentity::development(&dir).unwrap();
        assert_eq!(loaded.certs[0].to_vec(), certified.cert.der().to_vec());
        loaded.acceptor().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
