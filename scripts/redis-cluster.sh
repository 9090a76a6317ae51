#!/usr/bin/env bash
# Starts (idempotently) a 3-master Redis Cluster from Debian's redis-server for the service tier's tests and
# prints its seed URLs (comma-separated, for MATCHMAKER_REDIS_CLUSTER):
#
#   bash scripts/redis-cluster.sh            # 127.0.0.1:7001-7003, data under /tmp/matchmaker-redis-cluster
#   MATCHMAKER_CLUSTER_PORTS="7101 7102 7103" bash scripts/redis-cluster.sh
#
# No persistence, no replicas, bound to 127.0.0.1. A second run finds the cluster healthy and only prints the
# URLs; nodes that are down are restarted and, when the cluster is not healthy, it is reset and created again.
# Installs redis-server with apt when missing (needs root). No prompts.
set -euo pipefail

read -r -a PORTS <<<"${MATCHMAKER_CLUSTER_PORTS:-7001 7002 7003}"
DIR="${MATCHMAKER_CLUSTER_DIR:-/tmp/matchmaker-redis-cluster}"
HOST=127.0.0.1
export DEBIAN_FRONTEND=noninteractive

log() { printf '[redis-cluster] %s\n' "$*" >&2; }

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    log "redis-server is missing; install it (apt-get install redis-server) or run as root"
    exit 1
  fi
  log "installing redis-server"
  apt-get install -y -q redis-server >&2 || { apt-get update -q >&2 && apt-get install -y -q redis-server >&2; }
fi

cli() { redis-cli -h "$HOST" -p "$1" "${@:2}"; }

# One run at a time (parallel test workers may all ask for the cluster).
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9

wait_for() { # wait_for <description> <command...>
  local what=$1
  shift
  for _ in $(seq 1 150); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "timed out waiting for $what"
  return 1
}

healthy() {
  local info
  for port in "${PORTS[@]}"; do
    info=$(cli "$port" cluster info 2>/dev/null) || return 1
    grep -q '^cluster_state:ok' <<<"$info" || return 1
    grep -q "^cluster_known_nodes:${#PORTS[@]}" <<<"$info" || return 1
    grep -q '^cluster_slots_assigned:16384' <<<"$info" || return 1
  done
}

# 1. Every node running (a node that was down starts afresh: its old cluster config is dropped).
for port in "${PORTS[@]}"; do
  if cli "$port" ping >/dev/null 2>&1; then
    if ! cli "$port" cluster info >/dev/null 2>&1; then
      log "port $port is taken by a Redis that is not in cluster mode; free it or set MATCHMAKER_CLUSTER_PORTS"
      exit 1
    fi
    continue
  fi
  mkdir -p "$DIR/$port"
  rm -f "$DIR/$port/nodes.conf"
  log "starting cluster node on $HOST:$port"
  redis-server --port "$port" --bind "$HOST" --protected-mode no --daemonize yes \
    --cluster-enabled yes --cluster-config-file "$DIR/$port/nodes.conf" --cluster-node-timeout 5000 \
    --save '' --appendonly no --dir "$DIR/$port" --logfile "$DIR/$port/redis.log" \
    --pidfile "$DIR/$port/redis.pid" 9>&-
  wait_for "redis on port $port" cli "$port" ping
done

# 2. One healthy cluster over them.
if ! healthy; then
  log "creating the cluster"
  for port in "${PORTS[@]}"; do
    cli "$port" flushall >/dev/null 2>&1 || true
    cli "$port" cluster reset hard >/dev/null
  done
  seeds=()
  for port in "${PORTS[@]}"; do seeds+=("$HOST:$port"); done
  redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >&2
  wait_for "cluster_state:ok on every node" healthy
fi

urls=()
for port in "${PORTS[@]}"; do urls+=("redis://$HOST:$port"); done
(IFS=,; echo "${urls[*]}")
