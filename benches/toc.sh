#!/usr/bin/env bash
# keepsake with a huge table of contents (issue 13, defect 6). One command:
#
#     benches/toc.sh [--restore] [--keep] [TABLES] [LARGE_OBJECTS]
#
# Starts a throwaway PostgreSQL cluster and fills one database with TABLES tables (default
# 100000; schema-per-tenant: schemas of 100 tables, each with a primary key and one row) and
# LARGE_OBJECTS large objects (default 0; 1000000 is the other case the issue names). Its
# custom-format archive then has a table of contents of tens of MB. Measures, each once, with
# /usr/bin/time -v (wall time and peak RSS):
#   a. pg_dump -Fc -Z0 > /dev/null                          (the baseline)
#   b. keepsake backup --type full                          (parses the TOC while it streams)
#   c. keepsake verify --latest --level data                (reads every chunk, parses the TOC)
#   d. with --restore: pg_restore -d (one session) from a pg_dump file, against
#      keepsake restore --create (parallel by default)
# The TOC is parsed incrementally with bounded memory: keepsake's peak RSS should stay
# within a small factor of pg_dump's own (which holds the catalog in memory), not grow with
# the TOC's square. Results: $OUT_DIR/toc-summary.md (also printed).
#
# Environment: KEEPSAKE_BIN (default <repo>/target/release/keepsake; never built here),
#   OUT_DIR (default <repo>/bench-out), PG_MAJOR (default: the newest installed).
# Needs root (the server runs as `postgres`).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$SCRIPT_DIR")
die() { printf 'toc.sh: error: %s\n' "$*" >&2; exit 1; }
log() { printf '\n==> %s\n' "$*"; }

RESTORE=0
KEEP=0
TABLES=100000
LOS=0
positional=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --restore) RESTORE=1 ;;
        --keep) KEEP=1 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) positional+=("$1") ;;
    esac
    shift
done
[[ ${#positional[@]} -ge 1 ]] && TABLES=${positional[0]}
[[ ${#positional[@]} -ge 2 ]] && LOS=${positional[1]}
[[ $TABLES =~ ^[0-9]+$ && $TABLES -ge 100 ]] || die "TABLES must be a whole number ≥ 100, got '$TABLES'"
[[ $LOS =~ ^[0-9]+$ ]] || die "LARGE_OBJECTS must be a whole number, got '$LOS'"

KEEPSAKE_BIN=${KEEPSAKE_BIN:-$ROOT/target/release/keepsake}
OUT_DIR=${OUT_DIR:-$ROOT/bench-out}
[[ -x $KEEPSAKE_BIN ]] || die "$KEEPSAKE_BIN is missing: run cargo build --release first"
[[ $(id -u) -eq 0 ]] || die "run as root: the server runs as postgres"
PG_MAJOR=${PG_MAJOR:-$(ls /usr/lib/postgresql | sort -n | tail -1)}
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
[[ -x $PG_BIN/initdb ]] || die "no PostgreSQL $PG_MAJOR server binaries: apt-get install postgresql-$PG_MAJOR"

mkdir -p "$OUT_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keepsake-toc.XXXXXX")
chmod 755 "$WORK"
chown postgres: "$WORK"
PGDATA_DIR="$WORK/data"
cleanup() {
    local rc=$?
    set +e
    [[ -f $PGDATA_DIR/postmaster.pid ]] &&
        (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1)
    if [[ $KEEP -eq 0 ]]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
    [[ $rc -ne 0 ]] && echo "toc.sh: failed (exit $rc); the cluster was stopped" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
as_pg() { (cd / && runuser -u postgres -- "$@"); }

PASSWORD=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
printf '%s' "$PASSWORD" >"$WORK/password"
chmod 600 "$WORK/password"
chown postgres: "$WORK/password"
mkdir "$PGDATA_DIR" && chown postgres: "$PGDATA_DIR"
PORT=$((20000 + RANDOM % 40000))
log "PostgreSQL $PG_MAJOR in $WORK, port $PORT"
as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile="$WORK/password" -E UTF8 --locale=C.UTF-8 --no-sync >"$WORK/initdb.log" 2>&1 ||
    { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
# pg_dump locks every table in one transaction: max_locks_per_transaction × max_connections
# lock slots must hold them all.
LOCKS=$(( (TABLES + LOS) / 100 + 1024 ))
cat >>"$PGDATA_DIR/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$WORK'
max_locks_per_transaction = $LOCKS
shared_buffers = 256MB
fsync = off
synchronous_commit = off
autovacuum = off
EOF
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$WORK/server.log" -w -t 60 start >/dev/null ||
    { tail -20 "$WORK/server.log" >&2; die "cannot start PostgreSQL"; }
printf '127.0.0.1:%s:*:postgres:%s\n' "$PORT" "$PASSWORD" >"$WORK/pgpass"
chmod 600 "$WORK/pgpass"
export PGPASSFILE="$WORK/pgpass"
unset PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS
psql_db() { "$PG_BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
psql_db -d postgres -c "CREATE DATABASE tenants"

log "creating $TABLES tables (schemas of 100) and $LOS large objects"
SCHEMAS=$(( (TABLES + 99) / 100 ))
start=$(date +%s)
load() { # first-schema last-schema
    psql_db -d tenants -c "
DO \$\$
BEGIN
  FOR s IN $1..$2 LOOP
    EXECUTE format('CREATE SCHEMA tenant_%s', s);
    FOR t IN 1..100 LOOP
      EXIT WHEN (s - 1) * 100 + t > $TABLES;
      EXECUTE format('CREATE TABLE tenant_%s.t_%s (id int PRIMARY KEY, note text)', s, t);
      EXECUTE format('INSERT INTO tenant_%s.t_%s VALUES (1, %L)', s, t, md5(s::text || t::text));
    END LOOP;
    COMMIT;
  END LOOP;
END \$\$;"
}
half=$(( SCHEMAS / 2 ))
load 1 "$half" &
load $((half + 1)) "$SCHEMAS" &
wait %1 && wait %2 || die "loading the tables failed"
if [[ $LOS -gt 0 ]]; then
    psql_db -d tenants -c "SELECT count(lo_from_bytea(0, convert_to('wedding ' || i, 'UTF8'))) FROM generate_series(1, $LOS) i" >/dev/null
fi
echo "loaded in $(( $(date +%s) - start ))s"
as_pg "$PG_BIN/psql" -h "$WORK" -p "$PORT" -d postgres -X -q -c "ALTER SYSTEM SET fsync = on" >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$WORK/server.log" -m fast -w -t 120 restart >/dev/null

"$KEEPSAKE_BIN" keygen -o "$WORK/identity.txt" >"$WORK/recipient"
cat >"$WORK/keepsake.toml" <<EOF
[repository]
url = "file://$WORK/repo"

[encryption]
recipients = ["$(cat "$WORK/recipient")"]
identity_file = "$WORK/identity.txt"

[[sources]]
name = "tenants"
url = "postgres://postgres@127.0.0.1:$PORT/tenants?sslmode=disable"
password = "file:$WORK/password"

[postgres]
bin_dir = "$PG_BIN"

[daemon]
state_dir = "$WORK/state"
EOF
KS=("$KEEPSAKE_BIN" --config "$WORK/keepsake.toml")
"${KS[@]}" init >/dev/null

measure() { # name command…: wall seconds and the process's own peak RSS (VmHWM, KiB)
    # Sampled from /proc rather than taken from wait4(): the kernel's figure for a child is the
    # largest of its whole process tree, which for keepsake would be pg_dump's.
    local name=$1; shift
    local t0 t1 hwm=0 v
    t0=$(date +%s.%N)
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        [[ -n $v ]] && hwm=$v
        sleep 0.1
    done
    wait "$pid" || { tail -20 "$WORK/$name.err" >&2; die "$name failed"; }
    t1=$(date +%s.%N)
    local wall
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    printf '%s %s %s\n' "$name" "$wall" "$hwm" >>"$WORK/results"
    printf '%-22s %8.1f s  %8.1f MiB\n' "$name" "$wall" "$(awk -v k="$hwm" 'BEGIN { print k / 1024 }')"
}
: >"$WORK/results"
log "measuring"
measure pg_dump sh -c "exec '$PG_BIN/pg_dump' -h 127.0.0.1 -p $PORT -U postgres -Fc -Z0 tenants > /dev/null"
measure keepsake_backup "${KS[@]}" backup --type full
measure keepsake_verify "${KS[@]}" verify --latest --level data
if [[ $RESTORE -eq 1 ]]; then
    "$PG_BIN/pg_dump" -h 127.0.0.1 -p $PORT -U postgres -Fc -Z0 -f "$WORK/dump" tenants
    psql_db -d postgres -c "CREATE DATABASE r_pg"
    measure pg_restore "$PG_BIN/pg_restore" -h 127.0.0.1 -p "$PORT" -U postgres -d r_pg "$WORK/dump"
    ID=$("${KS[@]}" list --json | sed -n 's/.*"id": "\([^"]*\)".*/\1/p' | head -1)
    measure keepsake_restore "${KS[@]}" restore "$ID" --create \
        --target "postgres://postgres@127.0.0.1:$PORT/r_ks?sslmode=disable" --target-password "file:$WORK/password"
fi

# The TOC's size: the archive up to its first data block, as pg_restore lists it.
ENTRIES=$("$PG_BIN/pg_dump" -h 127.0.0.1 -p "$PORT" -U postgres -Fc -Z0 --schema-only tenants |
    "$PG_BIN/pg_restore" --list | grep -vc '^;')
{
    echo "## Huge table of contents ($(date -u +%Y-%m-%dT%H:%MZ), $TABLES tables, $LOS large objects)"
    echo
    echo "Command: \`benches/toc.sh $TABLES $LOS\`; PostgreSQL $PG_MAJOR; $(nproc) cores. TOC: $ENTRIES entries (schema only; with data, one more per table)."
    echo
    echo "| step | wall (s) | peak RSS (MiB) |"
    echo "| --- | ---: | ---: |"
    while read -r name wall rss; do
        printf '| %s | %.1f | %.1f |\n' "$name" "$wall" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"
    done <"$WORK/results"
    echo
    awk '$1 == "pg_dump" { t = $2; r = $3 } $1 == "keepsake_backup" { bt = $2; br = $3 }
         END { if (t > 0 && r > 0) printf "keepsake backup / pg_dump: %.2f× the time, %.2f× the peak RSS\n", bt / t, br / r }' "$WORK/results"
} | tee "$OUT_DIR/toc-summary.md"
