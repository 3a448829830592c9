//! `keycard sessions`: the records of a server-side store, through the
//! [`SessionStore`](keycard::SessionStore) contract every store implements.
//!
//! Sessions are named by their store key (64 hex digits, the SHA-256 of the
//! session ID: not a secret) or its handle (the first 32 hex digits, as the
//! "your sessions" page shows it). Nothing here ever sees a session ID.

use crate::cli::{
    ListArgs, RevokeArgs, RevokeUserArgs, SessionsCommand, ShowArgs, StatsArgs, SweepArgs,
};
use crate::error::Failure;
use crate::output::{self, sanitize, time, truncate, Table};
use crate::store_url::{self, Backend, OpenedStore, StoreUrl};
use crate::view;
use keycard::{now_millis, Record, SessionKey, SessionSummary, StoreError};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;

/// Records read per `list_all` call when walking a whole store.
const PAGE: usize = 1000;
/// The same for Redis, where every `list_all` call SCANs the whole prefix:
/// fewer, larger pages keep a walk over N sessions near O(N) rather than
/// O(N²/PAGE), for the memory of this many summaries at once.
const REDIS_PAGE: usize = 50_000;

/// The page size for walking `store`.
fn page_size(store: &OpenedStore) -> usize {
    match store.backend {
        Backend::Redis => REDIS_PAGE,
        _ => PAGE,
    }
}
/// The shortest handle prefix accepted: shorter ones match too much to be
/// a safe thing to revoke by.
const MIN_PREFIX: usize = 8;
/// User agents are cut to this many characters in tables.
const USER_AGENT_WIDTH: usize = 40;

/// Runs a `keycard sessions` subcommand on the store `url` (its `--store`, parsed).
pub async fn run(command: &SessionsCommand, url: &StoreUrl, json: bool) -> Result<(), Failure> {
    let args = command.store_args();
    let store = store_url::open(url, args.timeout, &args.redis_prefix).await?;
    match command {
        SessionsCommand::List(args) => list(&store, args, json).await,
        SessionsCommand::Show(args) => show(&store, args, json).await,
        SessionsCommand::Revoke(args) => revoke(&store, args, json).await,
        SessionsCommand::RevokeUser(args) => revoke_user(&store, args, json).await,
        SessionsCommand::Sweep(args) => sweep(&store, args, json).await,
        SessionsCommand::Stats(args) => stats(&store, args, json).await,
    }
}

/// Maps a store error to a failure naming the operation and the store.
fn failed<'a>(what: &'a str, store: &'a OpenedStore) -> impl Fn(StoreError) -> Failure + 'a {
    move |e| Failure::new(format!("cannot {what} in {}: {e}", store.name))
}

fn summary_json(s: &SessionSummary) -> Value {
    json!({
        "handle": s.key.handle(),
        "key": s.key.to_hex(),
        "user_id": s.user_id,
        "kind": s.kind,
        "created_at": s.created_at,
        "last_seen": s.last_seen,
        "idle_deadline": s.idle_deadline,
        "absolute_deadline": s.absolute_deadline,
        "expires_at": s.idle_deadline.min(s.absolute_deadline),
        "ip": s.ip,
        "user_agent": s.user_agent,
    })
}

async fn list(store: &OpenedStore, args: &ListArgs, json: bool) -> Result<(), Failure> {
    let limit = if args.limit == 0 {
        usize::MAX
    } else {
        args.limit
    };
    // One more than shown tells whether there is a next page.
    let wanted = limit.saturating_add(1);
    let mut found: Vec<SessionSummary> = match &args.user {
        Some(user) => {
            let mut all = store
                .store
                .list_for_user(user)
                .await
                .map_err(failed("list sessions", store))?;
            all.sort_by_key(|s| s.key);
            all.retain(|s| args.after.is_none_or(|after| s.key > after));
            all.truncate(wanted);
            all
        }
        None => {
            let mut all = Vec::new();
            let mut after = args.after;
            while all.len() < wanted {
                let size = page_size(store).min(wanted - all.len());
                let page = store
                    .store
                    .list_all(after.as_ref(), size)
                    .await
                    .map_err(failed("list sessions", store))?;
                let full = page.len() == size;
                after = page.last().map(|s| s.key);
                all.extend(page);
                if !full {
                    break;
                }
            }
            all
        }
    };
    let next_after = if found.len() > limit {
        found.truncate(limit);
        found.last().map(|s| s.key.to_hex())
    } else {
        None
    };
    if json {
        let sessions: Vec<Value> = found.iter().map(summary_json).collect();
        return output::print_json(&json!({"sessions": sessions, "next_after": next_after}));
    }
    if found.is_empty() {
        return output::print("no live sessions\n");
    }
    let mut table = Table::new(&[
        "HANDLE",
        "USER",
        "KIND",
        "CREATED (UTC)",
        "LAST SEEN (UTC)",
        "EXPIRES (UTC)",
        "IP",
        "USER AGENT",
    ]);
    for s in &found {
        table.row(vec![
            s.key.handle(),
            s.user_id
                .as_deref()
                .map_or_else(|| "-".into(), |u| truncate(u, 32)),
            sanitize(&s.kind),
            time(s.created_at),
            time(s.last_seen),
            time(s.idle_deadline.min(s.absolute_deadline)),
            s.ip.as_deref()
                .map_or_else(|| "-".into(), |ip| truncate(ip, 39)),
            s.user_agent
                .as_deref()
                .map_or_else(|| "-".into(), |ua| truncate(ua, USER_AGENT_WIDTH)),
        ]);
    }
    let mut text = table.render();
    if let Some(next) = next_after {
        text.push_str(&format!(
            "(first {} shown: --after {next} for the next page, or --limit 0 for all)\n",
            found.len()
        ));
    }
    output::print(&text)
}

/// A session as the operator named it.
#[derive(Debug, PartialEq)]
enum Target {
    /// A whole store key.
    Key(SessionKey),
    /// A handle, or a prefix of a key (lower-case hex).
    Prefix(String),
}

fn parse_target(text: &str) -> Result<Target, Failure> {
    let hex = text.trim().to_ascii_lowercase();
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) || hex.len() < MIN_PREFIX || hex.len() > 64 {
        return Err(Failure::new(format!(
            "`{}` is not a session handle (32 hex digits, or a unique prefix of at least {MIN_PREFIX}) or store key (64 hex digits)",
            sanitize(text)
        )));
    }
    match SessionKey::from_hex(&hex) {
        Some(key) => Ok(Target::Key(key)),
        None => Ok(Target::Prefix(hex)),
    }
}

/// The key just before the smallest key starting with `prefix`: `list_all`
/// lists keys strictly after the one it is given. `None` when that smallest
/// key is all zeros (nothing is before it).
fn before_prefix(prefix: &str) -> Option<SessionKey> {
    let padded = format!("{prefix:0<64}");
    let mut bytes = *SessionKey::from_hex(&padded)?.as_bytes();
    for byte in bytes.iter_mut().rev() {
        if *byte > 0 {
            *byte -= 1;
            return Some(SessionKey::from_bytes(bytes));
        }
        *byte = 0xff;
    }
    None
}

/// The key of the one session `text` names; an ambiguous handle or one that
/// matches no live session is an error.
async fn resolve(store: &OpenedStore, text: &str) -> Result<SessionKey, Failure> {
    let prefix = match parse_target(text)? {
        Target::Key(key) => return Ok(key),
        Target::Prefix(prefix) => prefix,
    };
    // Keys are listed in order, so the keys with this prefix come first.
    let page = store
        .store
        .list_all(before_prefix(&prefix).as_ref(), 5)
        .await
        .map_err(failed("look the session up", store))?;
    let matches: Vec<SessionKey> = page
        .iter()
        .map(|s| s.key)
        .take_while(|key| key.to_hex().starts_with(&prefix))
        .collect();
    match matches.as_slice() {
        [key] => Ok(*key),
        [] => Err(Failure::new(format!(
            "no live session has the handle {prefix} in {} (an expired one is still named by its 64-hex key)",
            store.name
        ))),
        several => {
            let keys: Vec<String> = several.iter().map(SessionKey::to_hex).collect();
            Err(Failure::new(format!(
                "the handle {prefix} is ambiguous: it matches {} sessions ({}): give the whole key",
                if several.len() >= 5 { "5 or more".into() } else { several.len().to_string() },
                keys.join(", ")
            )))
        }
    }
}

/// The record under `key`; a failure naming the key when there is none.
async fn load_existing(store: &OpenedStore, key: &SessionKey) -> Result<Record, Failure> {
    store
        .store
        .load(key)
        .await
        .map_err(failed("load the session", store))?
        .ok_or_else(|| {
            Failure::new(format!(
                "no session with key {} in {}",
                key.to_hex(),
                store.name
            ))
        })
}

async fn show(store: &OpenedStore, args: &ShowArgs, json: bool) -> Result<(), Failure> {
    let key = resolve(store, &args.session).await?;
    let record = load_existing(store, &key).await?;
    let now = now_millis();
    if json {
        output::print_json(&view::record_json(&key, &record, now, args.values))
    } else {
        output::print(&view::record_text(&key, &record, now, args.values))
    }
}

async fn revoke(store: &OpenedStore, args: &RevokeArgs, json: bool) -> Result<(), Failure> {
    let key = resolve(store, &args.session).await?;
    // Loaded first so that a mistyped key is reported, not silently "deleted".
    let record = load_existing(store, &key).await?;
    store
        .store
        .delete(&key)
        .await
        .map_err(failed("revoke the session", store))?;
    let summary = record.summary(key);
    if json {
        return output::print_json(&json!({"revoked": summary_json(&summary)}));
    }
    let user = summary
        .user_id
        .as_deref()
        .map_or_else(|| "no user".into(), |u| format!("user {}", sanitize(u)));
    output::print(&format!(
        "revoked {} {} ({user})\n",
        sanitize(&summary.kind),
        key.handle()
    ))
}

async fn revoke_user(
    store: &OpenedStore,
    args: &RevokeUserArgs,
    json: bool,
) -> Result<(), Failure> {
    let except = match &args.except {
        None => None,
        Some(text) => {
            let key = resolve(store, text).await?;
            let record = store
                .store
                .load(&key)
                .await
                .map_err(failed("load the session", store))?;
            // Keeping someone else's session would quietly keep all of this user's.
            if record.as_ref().and_then(|r| r.user_id.as_deref()) != Some(args.user.as_str()) {
                return Err(Failure::new(format!(
                    "--except {}: that is not a session of user {}",
                    key.handle(),
                    sanitize(&args.user)
                )));
            }
            Some(key)
        }
    };
    let revoked = store
        .store
        .delete_for_user(&args.user, except.as_ref())
        .await
        .map_err(failed("revoke the user's sessions", store))?;
    if json {
        return output::print_json(&json!({
            "user": args.user,
            "revoked": revoked,
            "kept": except.map(|k| k.handle()),
        }));
    }
    let kept = except.map_or_else(String::new, |k| format!(", kept {}", k.handle()));
    output::print(&format!(
        "revoked {revoked} record{} of user {}{kept}\n",
        if revoked == 1 { "" } else { "s" },
        sanitize(&args.user)
    ))
}

async fn sweep(store: &OpenedStore, args: &SweepArgs, json: bool) -> Result<(), Failure> {
    if matches!(store.backend, Backend::Redis) {
        if json {
            return output::print_json(&json!({"swept": 0, "batches": 0, "native_expiry": true}));
        }
        return output::print("Redis forgets expired sessions by itself: nothing to sweep\n");
    }
    // One cut-off for the whole run: records that expire meanwhile are left
    // for the next sweep, so the loop always ends.
    let now = now_millis();
    let batch = usize::try_from(args.batch).unwrap_or(usize::MAX);
    let bar = progress_bar(store, now).await;
    let (mut swept, mut batches) = (0u64, 0u64);
    let outcome = loop {
        match store.store.sweep(now, batch).await {
            Ok(removed) => {
                swept += removed;
                batches += 1;
                if let Some(bar) = &bar {
                    bar.inc(removed);
                }
                if removed < u64::from(args.batch) {
                    break Ok(());
                }
            }
            Err(e) => break Err(e),
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    outcome.map_err(|e| {
        Failure::new(format!(
            "cannot sweep {} (after deleting {swept} records): {e}",
            store.name
        ))
    })?;
    if json {
        return output::print_json(
            &json!({"swept": swept, "batches": batches, "native_expiry": false}),
        );
    }
    output::print(&format!(
        "swept {swept} expired record{} in {batches} batch{}\n",
        if swept == 1 { "" } else { "s" },
        if batches == 1 { "" } else { "es" }
    ))
}

/// A progress bar (or a spinner, when the count is unknown) on a terminal;
/// nothing when stderr is a pipe or a file.
async fn progress_bar(
    store: &OpenedStore,
    now: keycard::UnixMillis,
) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let style = |template: &str| {
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    };
    let bar = match store_url::count_expired(&store.backend, now).await {
        Ok(Some(total)) => {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(style(
                "sweeping {bar:30} {pos}/{len} expired records, {eta} left",
            ));
            bar
        }
        _ => {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(style("{spinner} sweeping: {pos} expired records deleted"));
            bar
        }
    };
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(bar)
}

async fn stats(store: &OpenedStore, args: &StatsArgs, json: bool) -> Result<(), Failure> {
    let now = now_millis();
    let mut total = 0u64;
    let mut anonymous = 0u64;
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_user: HashMap<String, u64> = HashMap::new();
    let mut after: Option<SessionKey> = None;
    loop {
        let page = store
            .store
            .list_all(after.as_ref(), page_size(store))
            .await
            .map_err(failed("list sessions", store))?;
        for s in &page {
            total += 1;
            *by_kind.entry(s.kind.clone()).or_default() += 1;
            match &s.user_id {
                Some(user) => *by_user.entry(user.clone()).or_default() += 1,
                None => anonymous += 1,
            }
        }
        if page.len() < page_size(store) {
            break;
        }
        after = page.last().map(|s| s.key);
    }
    let users = by_user.len();
    let mut top: Vec<(String, u64)> = by_user.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(args.top);
    let expired = match store_url::count_expired(&store.backend, now).await {
        Ok(count) => count,
        Err(e) => {
            output::warn(&format!(
                "cannot count expired records in {}: {e}",
                store.name
            ));
            None
        }
    };
    let native = matches!(store.backend, Backend::Redis);
    if json {
        let top: Vec<Value> = top
            .iter()
            .map(|(user, count)| json!({"user": user, "count": count}))
            .collect();
        return output::print_json(&json!({
            "live": total,
            "by_kind": by_kind,
            "users": users,
            "anonymous": anonymous,
            "top_users": top,
            "expired_unswept": expired.or(if native { Some(0) } else { None }),
            "native_expiry": native,
        }));
    }
    let mut text = format!("live records         {total}\n");
    for (kind, count) in &by_kind {
        text.push_str(&format!("  {:<18} {count}\n", truncate(kind, 18)));
    }
    text.push_str(&format!(
        "users                {users}\nanonymous records    {anonymous}\n"
    ));
    if !top.is_empty() {
        text.push_str("top users\n");
        let mut table = Table::new(&["  USER", "RECORDS"]);
        for (user, count) in &top {
            table.row(vec![format!("  {}", truncate(user, 40)), count.to_string()]);
        }
        text.push_str(&table.render());
    }
    let expired = match (expired, native) {
        (_, true) => "0 (Redis forgets them by itself)".into(),
        (Some(n), false) => n.to_string(),
        (None, false) => "unknown".into(),
    };
    text.push_str(&format!("expired, not swept   {expired}\n"));
    output::print(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_keys_or_prefixes() {
        let key = SessionKey::derive("t", "x");
        assert_eq!(
            parse_target(&key.to_hex().to_uppercase()).unwrap(),
            Target::Key(key)
        );
        assert_eq!(
            parse_target(&key.handle()).unwrap(),
            Target::Prefix(key.handle())
        );
        assert!(parse_target("abc").is_err());
        assert!(parse_target("zzzzzzzzzz").is_err());
        assert!(parse_target(&format!("{}0", key.to_hex())).is_err());
    }

    #[test]
    fn the_search_starts_just_before_the_prefix() {
        assert_eq!(before_prefix("00000000"), None);
        let before = before_prefix("0000000100").unwrap();
        assert_eq!(before.to_hex(), format!("00000000{}", "f".repeat(56)));
        let smallest = SessionKey::from_hex(&format!("{:0<64}", "0000000100")).unwrap();
        assert!(before < smallest);
    }
}
