//! `keycard keygen` and `keycard keys`: making and rotating key ring files.
//!
//! Every write goes to a new file beside the target (mode 0600 from the
//! start), then takes its place in one step, so a crash or a full disk never
//! leaves a half-written ring: a server reading the file sees the old ring or
//! the new one.

use crate::cli::{KeygenArgs, KeysCommand};
use crate::error::Failure;
use crate::output;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keycard::codec::KeyRing;
use serde_json::json;
use std::path::{Path, PathBuf};

/// `keycard keygen`.
pub fn keygen(args: &KeygenArgs, json: bool) -> Result<(), Failure> {
    let ring = KeyRing::generate().map_err(|e| Failure::new(format!("cannot make a key: {e}")))?;
    let ids: Vec<u16> = ring.ids().collect();
    let Some(path) = &args.out else {
        // Printing is the point here: the operator pipes it into a secret store.
        let text = if args.env {
            ring.to_env_value() + "\n"
        } else {
            ring.to_file_string()
        };
        return if json {
            let format = if args.env { "env" } else { "file" };
            output::print_json(
                &json!({"ids": ids, "newest": ring.newest_id(), "format": format, "ring": text.trim_end()}),
            )
        } else {
            output::print(&text)
        };
    };
    write_new(&ring, path, args.force)?;
    if json {
        output::print_json(&json!({"path": path, "ids": ids, "newest": ring.newest_id()}))
    } else {
        output::print(&format!(
            "wrote a new key ring to {} (key id {}, mode 0600)\n",
            path.display(),
            ring.newest_id()
        ))
    }
}

/// `keycard keys ...`.
pub fn keys(command: &KeysCommand, json: bool) -> Result<(), Failure> {
    match command {
        KeysCommand::List { file } => {
            let ring = load(file)?;
            let ids: Vec<u16> = ring.ids().collect();
            if json {
                return output::print_json(
                    &json!({"path": file, "ids": ids, "newest": ring.newest_id()}),
                );
            }
            let mut text = String::new();
            for id in &ids {
                let role = if *id == ring.newest_id() {
                    "  (newest: seals)"
                } else {
                    ""
                };
                text.push_str(&format!("{id}{role}\n"));
            }
            output::print(&text)
        }
        KeysCommand::Rotate { file } => {
            let mut ring = load(file)?;
            let added = ring
                .rotate()
                .map_err(|e| Failure::new(format!("cannot rotate {}: {e}", file.display())))?;
            replace(&ring, file)?;
            let ids: Vec<u16> = ring.ids().collect();
            if json {
                return output::print_json(
                    &json!({"path": file, "added": added, "ids": ids, "newest": added}),
                );
            }
            output::print(&format!(
                "added key {added} to {} (it seals from now on; older keys still open: {})\n",
                file.display(),
                list(ids.iter().filter(|id| **id != added))
            ))
        }
        KeysCommand::Remove { file, id } => {
            let mut ring = load(file)?;
            ring.remove(*id).map_err(|e| {
                Failure::new(format!(
                    "cannot remove key {id} from {}: {e}",
                    file.display()
                ))
            })?;
            replace(&ring, file)?;
            let ids: Vec<u16> = ring.ids().collect();
            if json {
                return output::print_json(
                    &json!({"path": file, "removed": id, "ids": ids, "newest": ring.newest_id()}),
                );
            }
            output::print(&format!(
                "removed key {id} from {} (cookies it sealed no longer open; keys left: {})\n",
                file.display(),
                list(ids.iter())
            ))
        }
    }
}

fn list<'a>(ids: impl Iterator<Item = &'a u16>) -> String {
    let ids: Vec<String> = ids.map(u16::to_string).collect();
    if ids.is_empty() {
        "none".into()
    } else {
        ids.join(", ")
    }
}

/// Reads a key ring file, warning when other users can read it.
pub fn load(path: &Path) -> Result<KeyRing, Failure> {
    let ring = KeyRing::from_file(path)
        .map_err(|e| Failure::new(format!("cannot read the key ring: {e}")))?;
    warn_if_shared(path);
    Ok(ring)
}

/// The library logs this through `tracing`, which this command does not
/// print: say it here, since the keys forge every session.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                output::warn(&format!(
                    "{} is readable by other users (mode {mode:o}): anyone who reads it can forge sessions; chmod 600 it",
                    path.display()
                ));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// A new file name beside `path`, for writing before the rename.
fn aside(path: &Path) -> Result<PathBuf, Failure> {
    let suffix = keycard::random_bytes::<8>().map_err(|e| Failure::new(e.to_string()))?;
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.tmp", URL_SAFE_NO_PAD.encode(suffix)));
    Ok(PathBuf::from(name))
}

/// Writes `ring` at `path`, which must not exist unless `force`.
fn write_new(ring: &KeyRing, path: &Path, force: bool) -> Result<(), Failure> {
    if force {
        return replace(ring, path);
    }
    if path.exists() {
        return Err(Failure::new(format!(
            "{} already exists: it may hold the keys of live sessions (use --force to replace it)",
            path.display()
        )));
    }
    let temp = aside(path)?;
    ring.write_file(&temp)
        .map_err(|e| Failure::new(format!("cannot write the key ring: {e}")))?;
    // A hard link fails if the name exists, so a file made meanwhile is never replaced.
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    linked.map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))?;
    sync_parent(path);
    Ok(())
}

/// Replaces `path` with `ring` in one step (a rename over it).
fn replace(ring: &KeyRing, path: &Path) -> Result<(), Failure> {
    let temp = aside(path)?;
    let written = ring
        .write_file(&temp)
        .map_err(|e| Failure::new(format!("cannot write the key ring: {e}")))
        .and_then(|()| {
            std::fs::rename(&temp, path)
                .map_err(|e| Failure::new(format!("cannot replace {}: {e}", path.display())))
        });
    match written {
        Ok(()) => sync_parent(path),
        Err(_) => {
            let _ = std::fs::remove_file(&temp);
        }
    }
    written
}

/// Makes a new directory entry durable: after a crash the file system may
/// otherwise come back with the old name, or none. Best effort: the file
/// itself was already synced.
fn sync_parent(path: &Path) {
    let parent = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Ok(dir) = std::fs::File::open(parent) {
        let _ = dir.sync_all();
    }
}
