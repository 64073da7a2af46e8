#!/usr/bin/env bash
# Start the PostgreSQL server the Postgres checkpoint tests use: Debian's postgresql, one throwaway cluster
# listening on 127.0.0.1 only, with a role that may create databases (each test makes its own).
# The tests find it as $ARCHLAB_TEST_POSTGRES_URL, whose default (tests/conftest.py) is what this script creates:
#   postgresql://archlab:archlab-test-pw@127.0.0.1:55432/archlab
# (The Chroma server and the Ray instance are started by the tests themselves, from the installed packages.)
# Under CI=true a server that cannot be had fails (exit 1): CI must not go green with the Postgres tests skipped.
# Elsewhere it exits 0 all the same, and those tests skip, saying why. Running it again is harmless.
set -u
port="${ARCHLAB_TEST_POSTGRES_PORT:-55432}"
data="${ARCHLAB_TEST_POSTGRES_DIR:-/tmp/archlab-postgres}"
role=archlab
password=archlab-test-pw
give_up() {
  echo "services setup: $1" >&2
  if [ "${CI:-}" = "true" ] || [ "${CI:-}" = "1" ]; then exit 1; fi
  echo "services setup: not under CI, so the Postgres tests will skip" >&2
  exit 0
}

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bindir" ]; then
  echo "installing postgresql"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) \
    >/tmp/archlab-postgres-install.log 2>&1 || give_up "could not install postgresql (see /tmp/archlab-postgres-install.log)"
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$bindir" ] || give_up "postgresql installed, but no /usr/lib/postgresql/*/bin"
fi

# the server refuses to run as root: as root, the cluster belongs to Debian's postgres user
if [ "$(id -u)" = "0" ]; then as_owner() { runuser -u postgres -- "$@"; }; else as_owner() { "$@"; }; fi
psql_admin() { "$bindir/psql" -h "$data" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }

if ! "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
  mkdir -p "$data"
  [ "$(id -u)" = "0" ] && chown postgres: "$data"
  chmod 700 "$data"
  if [ ! -f "$data/PG_VERSION" ]; then
    echo "creating a cluster in $data"
    as_owner "$bindir/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 \
      >/tmp/archlab-postgres-initdb.log 2>&1 || give_up "initdb failed (see /tmp/archlab-postgres-initdb.log)"
  fi
  echo "starting postgres on 127.0.0.1:$port"
  # the socket lives in the data directory, so this cluster never meets the system one in /var/run/postgresql
  as_owner "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $data -c fsync=off -c max_connections=200" start \
    >/dev/null || { tail -20 "$data/server.log" >&2; give_up "the server did not start (see $data/server.log)"; }
fi

if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != "1" ]; then
  psql_admin -c "CREATE ROLE $role LOGIN CREATEDB PASSWORD '$password'" || give_up "could not create role $role"
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$role'")" != "1" ]; then
  psql_admin -c "CREATE DATABASE $role OWNER $role" || give_up "could not create database $role"
fi
PGPASSWORD=$password "$bindir/psql" -h 127.0.0.1 -p "$port" -U "$role" -d "$role" -qtAc "SELECT 1" >/dev/null \
  || give_up "the server is up but $role cannot log in over TCP"
echo "postgres up: postgresql://$role:***@127.0.0.1:$port/$role"
