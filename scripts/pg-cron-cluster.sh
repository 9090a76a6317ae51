#!/usr/bin/env bash
# Creates (idempotently) a PostgreSQL 15 cluster owned by the test suite, with pg_cron preloaded,
# and prints its URL. Used by the queue tier's pg_cron tests (MATCHMAKER_CRON_DATABASE_URL).
#
#   sudo bash scripts/pg-cron-cluster.sh          # port 54329, cluster name "matchmaker"
#   MATCHMAKER_CRON_PORT=54400 bash scripts/pg-cron-cluster.sh
#
# Safe to run repeatedly: installs postgresql-15-cron only when missing, creates the cluster only
# when absent, rewrites our settings file every time and (re)starts the cluster when it is down.
# Needs root (apt-get, pg_createcluster). No prompts.
set -euo pipefail

PG_MAJOR=15
CLUSTER="${MATCHMAKER_CRON_CLUSTER:-matchmaker}"
PORT="${MATCHMAKER_CRON_PORT:-54329}"
export DEBIAN_FRONTEND=noninteractive

log() { printf '[pg-cron-cluster] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (apt-get and pg_createcluster need it)"
  exit 1
fi

# 1. The pg_cron package (Debian ships 1.4.x for PostgreSQL 15 on bookworm).
if [ ! -f "/usr/share/postgresql/${PG_MAJOR}/extension/pg_cron.control" ]; then
  log "installing postgresql-${PG_MAJOR}-cron"
  if ! apt-get install -y -q "postgresql-${PG_MAJOR}-cron" >&2; then
    log "install failed; refreshing package lists and retrying"
    apt-get update -q >&2
    apt-get install -y -q "postgresql-${PG_MAJOR}-cron" >&2
  fi
fi

# 2. The cluster.
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "${PG_MAJOR} ${CLUSTER}"; then
  log "creating cluster ${PG_MAJOR}/${CLUSTER} on port ${PORT}"
  pg_createcluster "${PG_MAJOR}" "${CLUSTER}" -p "${PORT}" -- --auth-local=trust --auth-host=trust >&2
fi

CONF_DIR="/etc/postgresql/${PG_MAJOR}/${CLUSTER}"
mkdir -p "${CONF_DIR}/conf.d"
cat >"${CONF_DIR}/conf.d/matchmaker-cron.conf" <<CONF
# Written by scripts/pg-cron-cluster.sh; rewritten on every run.
port = ${PORT}
listen_addresses = '127.0.0.1'
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
# Run jobs over libpq connections to localhost (trust auth below).
cron.host = '127.0.0.1'
max_connections = 60
CONF
# conf.d must be included (Debian's default postgresql.conf does include it; make sure).
grep -q "^include_dir = 'conf.d'" "${CONF_DIR}/postgresql.conf" || echo "include_dir = 'conf.d'" >>"${CONF_DIR}/postgresql.conf"

cat >"${CONF_DIR}/pg_hba.conf" <<HBA
# Written by scripts/pg-cron-cluster.sh: test cluster, loopback only, trust.
local all all trust
host  all all 127.0.0.1/32 trust
host  all all ::1/128 trust
HBA
chown -R postgres:postgres "${CONF_DIR}"

# 3. Start (or restart when the preload setting is not active yet).
status="$(pg_lsclusters -h | awk -v c="${CLUSTER}" -v v="${PG_MAJOR}" '$1==v && $2==c {print $4}')"
if [ "${status}" != "online" ]; then
  log "starting cluster"
  pg_ctlcluster "${PG_MAJOR}" "${CLUSTER}" start >&2
else
  preload="$(psql -X -qAt -h 127.0.0.1 -p "${PORT}" -U postgres -d postgres -c 'show shared_preload_libraries' || true)"
  if [ "${preload}" != "pg_cron" ]; then
    log "restarting cluster to load pg_cron"
    pg_ctlcluster "${PG_MAJOR}" "${CLUSTER}" restart >&2
  fi
fi

for _ in $(seq 1 50); do
  if psql -X -qAt -h 127.0.0.1 -p "${PORT}" -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; then break; fi
  sleep 0.2
done
psql -X -qAt -h 127.0.0.1 -p "${PORT}" -U postgres -d postgres -c 'select 1' >/dev/null

echo "postgres://postgres@127.0.0.1:${PORT}/postgres"
