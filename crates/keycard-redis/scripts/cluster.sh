#!/usr/bin/env bash
# Starts or stops a throwaway 3-primary Redis Cluster on 127.0.0.1:7001-7003,
# for the keycard-redis Cluster tests:
#
#   crates/keycard-redis/scripts/cluster.sh start /tmp/kc-cluster
#   KEYCARD_TEST_REDIS_CLUSTER_URL=redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 \
#       cargo test -p keycard-redis
#   crates/keycard-redis/scripts/cluster.sh stop /tmp/kc-cluster
#
# No persistence, loopback only. Needs redis-server and redis-cli on PATH.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
action=$1
dir=$2
ports=(7001 7002 7003)

stop() {
  for port in "${ports[@]}"; do
    # SHUTDOWN NOSAVE: nothing to keep; the pid file covers a node that hangs.
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  done
  for port in "${ports[@]}"; do
    pidfile="$dir/redis-$port.pid"
    if [[ -f $pidfile ]]; then
      pid=$(cat "$pidfile")
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
  rm -f "$dir"/nodes-*.conf
}

start() {
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  for port in "${ports[@]}"; do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then
      echo "port $port is already serving; run '$0 stop $dir' first" >&2
      exit 1
    fi
  done
  # A stale nodes file would make a fresh node believe it is still in an old cluster.
  rm -f "$dir"/nodes-*.conf
  for port in "${ports[@]}"; do
    redis-server --port "$port" --cluster-enabled yes \
      --cluster-config-file "$dir/nodes-$port.conf" \
      --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
      --dir "$dir" --pidfile "$dir/redis-$port.pid" --logfile "$dir/redis-$port.log"
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  redis-cli --cluster create 127.0.0.1:7001 127.0.0.1:7002 127.0.0.1:7003 \
    --cluster-replicas 0 --cluster-yes >"$dir/create.log"
  for _ in $(seq 300); do
    ok=1
    for port in "${ports[@]}"; do
      redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ok=0
    done
    if [[ $ok -eq 1 ]]; then
      echo "cluster up: redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
      return 0
    fi
    sleep 0.1
  done
  echo "cluster did not reach cluster_state:ok; see $dir/*.log" >&2
  exit 1
}

case $action in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
