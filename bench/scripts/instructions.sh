#!/usr/bin/env bash
# User-space instructions per request, counted by valgrind's callgrind: exact and
# repeatable, whatever else the machine is doing (unlike CPU time).
#
#   bash bench/scripts/instructions.sh [N] [VARIANTS] [ROUTES]
#
# For each variant and route: the server runs under callgrind; a client sends
# 64 GET /new, 200 warm-up requests, then the counters are zeroed, N requests
# (default 5000) are sent one at a time on one keep-alive connection, and the
# counters are dumped. Prints a markdown table to stdout. Only 127.0.0.1.
# KEEP_DUMPS=DIR keeps the callgrind dumps there (for callgrind_annotate).
#
# Caveat: valgrind's CPU has no SHA extensions, so sha2 falls back to its
# software rounds (about 3,500 instructions per SHA-256 block computation
# here); the table shows them apart so they can be set aside. Kernel time is
# not counted at all.
set -euo pipefail
N=${1:-5000}
VARIANTS=${2:-bare,floor-memory,kc-memory,ts-memory,kc-cookie,pcj}
ROUTES=${3:-read,write,new}
here=$(cd "$(dirname "$0")/.." && pwd)
server="$here/target/release/server"
[ -x "$server" ] || (cd "$here" && cargo build --release --bin server >&2)
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
work=$(mktemp -d)
vpid=
trap 'rm -rf "$work"' EXIT

count() { # variant route -> "total sha"; runs in a subshell of its own
  local v=$1 r=$2 port
  trap '[ -n "$vpid" ] && kill "$vpid" 2>/dev/null' EXIT
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  valgrind --tool=callgrind --callgrind-out-file="$work/cg-$v-$r.%p" "$server" "$v" "$port" \
    >"$work/server.log" 2>&1 &
  vpid=$!
  local ready=
  for _ in $(seq 300); do
    if grep -q ready "$work/server.log" 2>/dev/null; then ready=1; break; fi
    sleep 0.2
  done
  if [ -z "$ready" ]; then
    echo "$v did not start under valgrind in 60 s:" >&2; cat "$work/server.log" >&2; return 1
  fi
  python3 - "$port" "$r" "$N" "$vpid" <<'PY'
import http.client, subprocess, sys
port, route, n, vpid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
def req(method, path, cookie=None):
    # A browser's User-Agent on every request, as in the load rounds.
    c.request(method, path, headers={"User-Agent": UA, **({"Cookie": cookie} if cookie else {})})
    r = c.getresponse(); body = r.read()
    if r.status != 200: raise SystemExit(f"{method} {path}: {r.status} {body[:200]!r}")
    return r
cookies = []
for _ in range(64):
    sc = req("GET", "/new").getheader("set-cookie")
    cookies.append(sc.split(";")[0] if sc else "__Host-keycard=" + "A" * 43)
method = "POST" if route == "write" else "GET"
cookie = lambda i: None if route == "new" else cookies[i % 64]
for i in range(200): req(method, "/" + route, cookie(i))
subprocess.run(["callgrind_control", "-z", vpid], capture_output=True, check=True)
for i in range(n): req(method, "/" + route, cookie(i))
subprocess.run(["callgrind_control", "-d", vpid], capture_output=True, check=True)
PY
  kill "$vpid"; wait "$vpid" 2>/dev/null || true
  vpid=
  local dump; dump=$(ls "$work"/cg-"$v"-"$r".*.1)
  local total sha
  total=$(callgrind_annotate "$dump" | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
  sha=$(callgrind_annotate --inclusive=yes "$dump" | awk '/sha2::sha256::compress256 \[/ && !done {gsub(",","",$1); print $1; done = 1}')
  echo "$total ${sha:-0}"
  # KEEP_DUMPS=DIR keeps each callgrind dump, for callgrind_annotate --inclusive=yes.
  if [ -n "${KEEP_DUMPS:-}" ]; then mkdir -p "$KEEP_DUMPS" && cp "$dump" "$KEEP_DUMPS/cg-$v-$r"; fi
  rm -f "$work"/cg-"$v"-"$r".*
}

echo "Instructions per request (user space, callgrind), $N requests each, one connection."
echo
echo "| route | variant | instructions/req | over bare | of which software SHA-256 | over bare without it |"
echo "|---|---|---:|---:|---:|---:|"
for r in ${ROUTES//,/ }; do
  out=$(count bare "$r") || exit 1
  read -r bare_total _ <<<"$out"
  bare=$((bare_total / N))
  echo "| /$r | bare | $bare | 0 | 0 | 0 |"
  for v in ${VARIANTS//,/ }; do
    [ "$v" = bare ] && continue
    out=$(count "$v" "$r") || exit 1
    read -r total sha <<<"$out"
    per=$((total / N)); s=$((sha / N))
    echo "| /$r | $v | $per | $((per - bare)) | $s | $((per - bare - s)) |"
  done
done
