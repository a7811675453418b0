#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis are reachable on 127.0.0.1 for the tests.
# Installs them from Debian's packages if missing (fresh machine), starts them
# if down. Prints the environment the tests read. With CI=true an unreachable
# service is fatal; locally it is reported and the dependent tests skip loudly.
set -u
PG_URL="postgres://postgres@127.0.0.1:5432/test"
REDIS_URL="redis://127.0.0.1:6379"

log() { echo "services: $*" >&2; }

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

install_pkgs() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing $*"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >&2 || log "apt-get install $* failed"
  fi
}

if ! pg_up; then
  command -v pg_ctlcluster >/dev/null || install_pkgs postgresql postgresql-client
  if [ -d /etc/postgresql ]; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >&2 2>&1 || true
    for _ in $(seq 1 30); do pg_up && break; sleep 0.5; done
  fi
  if pg_up; then
    # Fresh cluster: trust auth for local TCP and a `test` database.
    su postgres -c "psql -qtc \"SELECT 1 FROM pg_database WHERE datname='test'\" | grep -q 1 || createdb test" >&2 2>&1 || true
  fi
fi

if ! redis_up; then
  command -v redis-server >/dev/null || install_pkgs redis-server
  if command -v redis-server >/dev/null; then
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >&2 || true
    for _ in $(seq 1 30); do redis_up && break; sleep 0.2; done
  fi
fi

fail=0
if pg_up && psql "$PG_URL" -qtc 'SELECT 1' >/dev/null 2>&1; then
  echo "export TANDEM_TEST_POSTGRES=$PG_URL"
else
  log "PostgreSQL NOT reachable at $PG_URL"; fail=1
fi
if redis_up; then
  echo "export TANDEM_TEST_REDIS=$REDIS_URL"
else
  log "Redis NOT reachable at $REDIS_URL"; fail=1
fi
if [ "$fail" = 1 ] && [ "${CI:-}" = "true" ]; then
  log "CI=true: PostgreSQL and Redis are required"; exit 1
fi
exit 0
