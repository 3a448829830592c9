//! The Lua scripts that make each per-session operation atomic.
//!
//! Every script touches exactly one key (declared in `KEYS`), so it runs on one
//! Cluster node. They are sent with `EVALSHA` through [`redis::Script`], which
//! loads them (`SCRIPT LOAD`, on every primary in Cluster) on a `NOSCRIPT` reply.
//! Field names here must match [`crate::layout`].

use redis::Script;

/// Creates a session unless the key exists.
///
/// `KEYS[1]` session hash; `ARGV[1]` expiry (PEXPIREAT millis); `ARGV[2..]`
/// field/value pairs. Returns 1 when created, 0 when the key existed.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = #ARGV
local i = 2
-- HSET in slices: unpack() of thousands of values would overflow Lua's C stack.
while i <= n do
  local last = math.min(i + 199, n)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
";

/// Applies an [`Update`](keycard::Update) to an existing session.
///
/// `KEYS[1]` session hash. `ARGV`: 1 now, 2 last_seen, 3 idle deadline,
/// 4 absolute deadline, 5 expiry, 6 user mode (`k` keep, `-` clear, `=` set),
/// 7 user, 8 client mode (`k`/`=`), 9 ip mode (`-`/`=`), 10 ip, 11 ua mode,
/// 12 ua, then the changes from 13 (see [`CHANGES`]).
///
/// Returns `{0}` when gone (missing, or past a deadline by the caller's clock),
/// `{2}` when the stored deadlines are unreadable, else `{1, has_user, user}`
/// with the user *before* the update, for the index.
///
/// Everything is validated before the first write, because Redis does not roll
/// back a script's earlier writes when a later command fails.
const APPLY_HEAD: &str = r"
local k = KEYS[1]
local meta = redis.call('HMGET', k, 'v', 'm:user', 'm:created', 'm:idle', 'm:abs')
if not meta[1] then return {0} end
-- The times as decimal strings, from layout 2's `v` or layout 1's fields.
local created, idle_s, abs_s
if meta[1] == '1' then
  created, idle_s, abs_s = meta[3], meta[4], meta[5]
else
  created, idle_s, abs_s = string.match(meta[1], '^2 (%-?%d+) %-?%d+ (%-?%d+) (%-?%d+)$')
end
local idle, abs = tonumber(idle_s or ''), tonumber(abs_s or '')
if not created or not idle or not abs then return {2} end
if math.min(idle, abs) <= tonumber(ARGV[1]) then return {0} end
local first = 13
";

const APPLY_TAIL: &str = r"
if ARGV[6] == '-' then redis.call('HDEL', k, 'm:user')
elseif ARGV[6] == '=' then redis.call('HSET', k, 'm:user', ARGV[7]) end
if ARGV[8] == '=' then
  if ARGV[9] == '=' then redis.call('HSET', k, 'm:ip', ARGV[10]) else redis.call('HDEL', k, 'm:ip') end
  if ARGV[11] == '=' then redis.call('HSET', k, 'm:ua', ARGV[12]) else redis.call('HDEL', k, 'm:ua') end
end
-- The strings are written back as given: Lua numbers are doubles.
redis.call('HSET', k, 'v', '2 ' .. created .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
if meta[1] == '1' then redis.call('HDEL', k, 'm:created', 'm:seen', 'm:idle', 'm:abs') end
redis.call('PEXPIREAT', k, ARGV[5])
if meta[2] then return {1, 1, meta[2]} end
return {1, 0, ''}
";

/// Applies data changes to an existing session and returns the whole hash
/// after them (`HGETALL`), or nil when the key does not exist: for
/// [`apply_and_load`](keycard::SessionStore::apply_and_load), one round trip
/// for a write whose result is needed. Deadlines are not touched; a live
/// session's key exists exactly until its deadline (`PEXPIREAT`), so
/// existence is liveness.
///
/// `KEYS[1]` session hash; `ARGV` the changes from 1 (see [`CHANGES`]).
const APPLY_LOAD_HEAD: &str = r"
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return false end
local first = 1
";

const APPLY_LOAD_TAIL: &str = r"
return redis.call('HGETALL', k)
";

/// The change list both apply scripts run on hash `k`, from `ARGV[first]`:
/// `S field json` (set), `R field` (remove), `C` (clear every data field),
/// `I field by` (increment). A malformed list is refused before any write.
const CHANGES: &str = r"
local I64_MAX, I64_MIN = '9223372036854775807', '-9223372036854775808'
-- Whether canonical integer text fits in an i64 (serde_json's as_i64).
local function fits_i64(s)
  local digits = s
  local limit = I64_MAX
  if string.sub(s, 1, 1) == '-' then digits = string.sub(s, 2); limit = string.sub(I64_MIN, 2) end
  if #digits ~= #limit then return #digits < #limit end
  return digits <= limit
end
-- Change::Increment: an integer that fits in i64 gets `by` added, saturating;
-- anything else (missing, float, string, out-of-range number) counts as 0.
-- HINCRBY accepts exactly the canonical i64 text serde_json reads as an i64
-- (and a missing field as 0), so it is tried first; its two failures, a
-- value that is not such an integer and an overflow, are told apart after.
local function increment(field, by)
  local res = redis.pcall('HINCRBY', k, field, by)
  if type(res) == 'table' and res.err then
    local cur = redis.call('HGET', k, field)
    if cur and (cur == '0' or string.match(cur, '^%-?[1-9]%d*$')) and fits_i64(cur) then
      if string.sub(by, 1, 1) == '-' then res = I64_MIN else res = I64_MAX end
      redis.call('HSET', k, field, res)
    else
      redis.call('HSET', k, field, by)
    end
  end
end

local arity = {S = 3, R = 2, C = 1, I = 3}
local n = #ARGV
local j = first
while j <= n do
  local step = arity[ARGV[j]]
  if not step or j + step - 1 > n then
    return redis.error_reply('keycard: malformed change list')
  end
  j = j + step
end

local i = first
while i <= n do
  local op = ARGV[i]
  if op == 'S' then
    redis.call('HSET', k, ARGV[i + 1], ARGV[i + 2]); i = i + 3
  elseif op == 'R' then
    redis.call('HDEL', k, ARGV[i + 1]); i = i + 2
  elseif op == 'C' then
    local data = {}
    for _, f in ipairs(redis.call('HKEYS', k)) do
      if string.sub(f, 1, 2) == 'd:' then
        data[#data + 1] = f
        if #data == 200 then redis.call('HDEL', k, unpack(data)); data = {} end
      end
    end
    if #data > 0 then redis.call('HDEL', k, unpack(data)) end
    i = i + 1
  else
    increment(ARGV[i + 1], ARGV[i + 2]); i = i + 3
  end
end
";

/// Removes a session and hands back all its fields (`HGETALL` + `DEL`), for
/// rotation. `KEYS[1]` session hash. An empty array when there was none.
const TAKE: &str = r"
local all = redis.call('HGETALL', KEYS[1])
if #all > 0 then redis.call('DEL', KEYS[1]) end
return all
";

/// Deletes a session and returns its user (nil when none), for the index.
const DELETE: &str = r"
local user = redis.call('HGET', KEYS[1], 'm:user')
redis.call('DEL', KEYS[1])
return user
";

/// Deletes a session only if it (still) belongs to `ARGV[1]`: an index entry
/// can be stale after a user change, and must not delete someone else's session.
const DELETE_IF_USER: &str = r"
if redis.call('HGET', KEYS[1], 'm:user') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Adds a session to a user index and makes the index live at least as long
/// as that session. `KEYS[1]` index set; `ARGV[1]` key hex; `ARGV[2]` expiry.
///
/// NX sets a TTL on a new set; GT only ever extends it, so the set lives as long
/// as its longest-lived member (Redis >= 7.0 / Valkey >= 7.2 for NX/GT).
const INDEX_ADD: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'NX')
redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'GT')
return 1
";

/// The compiled scripts (each holds its SHA1 for `EVALSHA`).
pub(crate) struct Scripts {
    pub(crate) create: Script,
    pub(crate) apply: Script,
    pub(crate) apply_load: Script,
    pub(crate) take: Script,
    pub(crate) delete: Script,
    pub(crate) delete_if_user: Script,
    pub(crate) index_add: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            create: Script::new(CREATE),
            apply: Script::new(&[APPLY_HEAD, CHANGES, APPLY_TAIL].concat()),
            apply_load: Script::new(&[APPLY_LOAD_HEAD, CHANGES, APPLY_LOAD_TAIL].concat()),
            take: Script::new(TAKE),
            delete: Script::new(DELETE),
            delete_if_user: Script::new(DELETE_IF_USER),
            index_add: Script::new(INDEX_ADD),
        }
    }
}
