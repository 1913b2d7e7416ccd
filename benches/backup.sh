#!/usr/bin/env bash
# keepsake backup benchmark. One command:
#
#     benches/backup.sh [--restore] [--s3 | --only-s3] [--keep] [SCALE_GB]
#
# Starts a throwaway PostgreSQL 15 cluster, generates a deterministic wedding-planning
# database of at least SCALE_GB (default 1, fractions allowed) of table data, and measures
#   e. `keepsake backup --type full` against `pg_dump -Fc -Z0 > /dev/null` and
#      `pg_dump -Fc | age` (interleaved rounds, so the ratios share the same conditions),
#   f. the peak RSS of `keepsake backup --type full` (/usr/bin/time -v),
#   g. the incremental's stored bytes after a realistic change against restic's data_added,
#   h. with --restore: `keepsake restore --create` against `pg_restore` (single and -j2, and
#      -j2 from a dump with pg_dump's default compression),
#   s. with --s3: a single-node Garage server on loopback (as the tests start it), then
#      `keepsake backup --type full` and `keepsake restore --create` with a folder repository
#      against the same with an S3 repository (one hyperfine run each), and the S3 requests
#      per GiB of one backup and one restore. --only-s3: only this part (skips e, f, g, h).
# Results: $OUT_DIR (default <repo>/bench-out): hyperfine JSON, summary.md (also printed).
#
# Environment: KEEPSAKE_BIN (default <repo>/target/release/keepsake; never built here),
#   OUT_DIR, RUNS (hyperfine runs, default 3, minimum 3), WARMUP (default 1), PG_MAJOR (15),
#   KEEPSAKE_GARAGE (--s3: the garage binary; default garage on PATH, else ~/.cargo/bin),
#   GARAGE_DB_ENGINE (--s3: Garage's metadata engine, lmdb (its default) or sqlite (the tests')).
# Needs root for apt-get (missing tools are installed) and runs the server as `postgres`.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$SCRIPT_DIR")
SQL_DIR="$SCRIPT_DIR/sql"

usage() { # the header comment above
    awk 'NR > 1 && !/^#/ { exit } NR > 1' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() { printf 'backup.sh: error: %s\n' "$*" >&2; exit 1; }
log() { printf '\n==> %s\n' "$*"; }

RESTORE=0
S3=0
ONLY_S3=0
KEEP=0
SCALE=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --restore) RESTORE=1 ;;
        --s3) S3=1 ;;
        --only-s3) S3=1; ONLY_S3=1 ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) SCALE=$1 ;;
    esac
    shift
done
[[ $SCALE =~ ^([0-9]+(\.[0-9]*)?|\.[0-9]+)$ ]] || die "SCALE_GB must be a positive number, got '$SCALE'"
awk -v s="$SCALE" 'BEGIN { exit !(s >= 0.001) }' || die "SCALE_GB must be at least 0.001, got '$SCALE'"
[[ $RESTORE -eq 1 && $ONLY_S3 -eq 1 ]] &&
    die "--restore needs the dump made in section g, which --only-s3 skips (use --restore --s3)"

RUNS=${RUNS:-3}
WARMUP=${WARMUP:-1}
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 3 ]] || die "RUNS must be an integer >= 3"
[[ $WARMUP =~ ^[0-9]+$ && $WARMUP -ge 1 ]] || die "WARMUP must be an integer >= 1"
PG_MAJOR=${PG_MAJOR:-15}

# d. The binary under test: never built here.
KEEPSAKE_BIN=${KEEPSAKE_BIN:-$ROOT/target/release/keepsake}
GARAGE_DB_ENGINE=${GARAGE_DB_ENGINE:-lmdb}
[[ $GARAGE_DB_ENGINE == lmdb || $GARAGE_DB_ENGINE == sqlite ]] || die "GARAGE_DB_ENGINE must be lmdb or sqlite"
[[ -x $KEEPSAKE_BIN && -f $KEEPSAKE_BIN ]] ||
    die "keepsake binary not found at $KEEPSAKE_BIN: run cargo build --release first (or set KEEPSAKE_BIN)"
KEEPSAKE_BIN=$(cd "$(dirname "$KEEPSAKE_BIN")" && pwd)/$(basename "$KEEPSAKE_BIN")

OUT_DIR=${OUT_DIR:-$ROOT/bench-out}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
WORK="$OUT_DIR/work"    # repositories and dumps; removed at exit unless --keep
# No stale results from an earlier run next to this run's.
rm -f "$OUT_DIR"/hyperfine-restore-round*.json "$OUT_DIR"/hyperfine-backup-round*.json \
    "$OUT_DIR"/{hyperfine-backup,hyperfine-restore,hyperfine-s3-backup,hyperfine-s3-restore}.{json,md} \
    "$OUT_DIR"/{keepsake-full,keepsake-incremental,restic-full,restic-incremental,rss-backup,s3-backup}.json \
    "$OUT_DIR"/{rss-time,s3-backup-log,s3-restore-log}.txt "$OUT_DIR/summary.md"

IS_ROOT=0
[[ $(id -u) -eq 0 ]] && IS_ROOT=1

# ---------------------------------------------------------------------------------------------
# a. Tools.
# ---------------------------------------------------------------------------------------------
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v age >/dev/null || missing+=(age)
command -v restic >/dev/null || missing+=(restic)
[[ -x /usr/bin/time ]] || missing+=(time)
command -v zstd >/dev/null || missing+=(zstd)
command -v jq >/dev/null || missing+=(jq)
[[ -x $PG_BIN/initdb ]] || missing+=("postgresql-$PG_MAJOR")
[[ -x $PG_BIN/pg_dump && -x $PG_BIN/psql ]] || missing+=("postgresql-client-$PG_MAJOR")
if [[ ${#missing[@]} -gt 0 ]]; then
    [[ $IS_ROOT -eq 1 ]] || die "missing packages: ${missing[*]} (run as root to install them, or apt-get install them)"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Garage (--s3), found as the tests find it (tests/setup.sh installs it: no Debian package).
GARAGE_BIN=""
if [[ $S3 -eq 1 ]]; then
    if [[ -n ${KEEPSAKE_GARAGE:-} ]]; then
        GARAGE_BIN=$KEEPSAKE_GARAGE
        [[ -f $GARAGE_BIN && -x $GARAGE_BIN ]] || die "KEEPSAKE_GARAGE=$GARAGE_BIN is not an executable file"
    elif command -v garage >/dev/null; then
        GARAGE_BIN=$(command -v garage)
    elif [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/garage ]]; then
        GARAGE_BIN=${CARGO_HOME:-$HOME/.cargo}/bin/garage
    else
        die "--s3 needs garage: not on PATH nor in ${CARGO_HOME:-$HOME/.cargo}/bin; run tests/setup.sh (cargo install garage --locked --version 2.5.0) or set KEEPSAKE_GARAGE"
    fi
    GARAGE_VERSION=$("$GARAGE_BIN" --version 2>&1 | head -n 1) ||
        die "$GARAGE_BIN --version failed: $GARAGE_VERSION (reinstall it with tests/setup.sh)"
fi
if [[ $IS_ROOT -eq 1 ]] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

# ---------------------------------------------------------------------------------------------
# b. A throwaway cluster, stopped and removed on exit (success, failure or interrupt).
# ---------------------------------------------------------------------------------------------
PGTMP=""
PGDATA_DIR=""
GARAGE_PID=""
stop_garage() { # SIGTERM, then SIGKILL after 10 s; reaps it. Safe under set -e and twice.
    [[ -n $GARAGE_PID ]] || return 0
    kill -TERM "$GARAGE_PID" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$GARAGE_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$GARAGE_PID" 2>/dev/null || true
    wait "$GARAGE_PID" 2>/dev/null || true
    GARAGE_PID=""
}
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    stop_garage
    local pids
    pids=$(jobs -pr)
    # shellcheck disable=SC2086 # one pid per word
    [[ -n $pids ]] && kill $pids 2>/dev/null && wait $pids 2>/dev/null
    if [[ -n $PGDATA_DIR && -f $PGDATA_DIR/postmaster.pid ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w -t 30 stop >/dev/null 2>&1
    fi
    [[ -n $PGTMP ]] && rm -rf "$PGTMP"
    if [[ $KEEP -eq 0 ]]; then
        rm -rf "$WORK"
    else
        echo "kept $WORK (repositories, dumps, configs)"
    fi
    local what="the cluster was"
    [[ $S3 -eq 1 ]] && what="the cluster and Garage were"
    [[ $rc -ne 0 ]] && echo "backup.sh: failed (exit $rc); $what stopped and removed" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_pg() {
    if [[ $IS_ROOT -eq 1 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

rm -rf "$WORK"
mkdir -p "$WORK"
PGTMP=$(mktemp -d "${TMPDIR:-/tmp}/keepsake-bench-pg.XXXXXX")
PGDATA_DIR="$PGTMP/data"
PW_FILE="$PGTMP/password"
PGPASS_FILE="$PGTMP/pgpass"
PASSWORD=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
printf '%s' "$PASSWORD" >"$PW_FILE"
chmod 600 "$PW_FILE"
if [[ $IS_ROOT -eq 1 ]]; then
    chown postgres: "$PGTMP" "$PW_FILE"
fi

log "starting a throwaway PostgreSQL $PG_MAJOR cluster in $PGTMP"
as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile="$PW_FILE" -E UTF8 --locale=C.UTF-8 --no-sync >"$PGTMP/initdb.log" 2>&1 ||
    { cat "$PGTMP/initdb.log" >&2; die "initdb failed"; }
cat >>"$PGDATA_DIR/postgresql.conf" <<EOF

# keepsake benchmark
include_if_exists = 'bench.conf'
include_if_exists = 'load.conf'
EOF
# Settings for the whole benchmark. autovacuum is off so that no background work (e.g. analyzing
# freshly restored databases) lands in another command's measurement.
write_bench_conf() {
    cat >"$PGDATA_DIR/bench.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$PGTMP'
shared_buffers = 256MB
maintenance_work_mem = 256MB
max_wal_size = 4GB
checkpoint_timeout = 30min
autovacuum = off
EOF
}
# Only while loading the generated data (removed, and the server restarted, before measuring).
cat >"$PGDATA_DIR/load.conf" <<EOF
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
EOF
[[ $IS_ROOT -eq 1 ]] && chown postgres: "$PGDATA_DIR/load.conf"

PORT=""
for attempt in 1 2 3 4 5; do
    PORT=$(free_port) || die "no free TCP port found"
    write_bench_conf
    [[ $IS_ROOT -eq 1 ]] && chown postgres: "$PGDATA_DIR/bench.conf"
    if as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGTMP/server.log" -w -t 60 start >/dev/null 2>&1; then
        break
    fi
    [[ $attempt -eq 5 ]] && { tail -20 "$PGTMP/server.log" >&2; die "cannot start PostgreSQL"; }
done

printf '127.0.0.1:%s:*:postgres:%s\n' "$PORT" "$PASSWORD" >"$PGPASS_FILE"
chmod 600 "$PGPASS_FILE"
export PGPASSFILE="$PGPASS_FILE"
unset PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS
DB=wedbench
CONN=(-h 127.0.0.1 -p "$PORT" -U postgres)
psql_db() { "$PG_BIN/psql" "${CONN[@]}" -X -q -v ON_ERROR_STOP=1 "$@"; }
scalar() { psql_db -d "$DB" -At -c "$1"; }
PG_VERSION=$(psql_db -d postgres -At -c 'SHOW server_version')
psql_db -d postgres -c "CREATE DATABASE $DB"
echo "PostgreSQL $PG_VERSION on 127.0.0.1:$PORT (scram-sha-256 password auth)"

# ---------------------------------------------------------------------------------------------
# c. Deterministic data: at least SCALE_GB GiB of table data (heap + TOAST, without indexes).
# ---------------------------------------------------------------------------------------------
rows() { awk -v s="$SCALE" -v r="$1" -v m="$2" 'BEGIN { n = int(s * r); if (n < m) n = m; print n }'; }
# Rows per GiB, calibrated on PostgreSQL 15 (~490, ~810, ~107 bytes a row) so that guests hold
# ~1/2 of the data, photos ~1/4, payments ~1/6, and the total lands ~3% above the target.
N_GUESTS=$(rows 1200000 100)
N_COUPLES=$(rows 20000 20)
N_VENDORS=$(rows 12000 20)
N_PAYMENTS=$(rows 1800000 100)
N_PHOTOS=$(rows 380000 100)
TARGET_BYTES=$(awk -v s="$SCALE" 'BEGIN { printf "%.0f", s * 1073741824 }')

log "loading ~$SCALE GiB: $N_GUESTS guests, $N_PHOTOS photos, $N_PAYMENTS payments, $N_COUPLES couples, $N_VENDORS vendors (fsync=off while loading)"
t_load=$SECONDS
psql_db -d "$DB" -f "$SQL_DIR/schema.sql"
psql_db -d "$DB" -v lo=1 -v hi="$N_GUESTS" -v n_couples="$N_COUPLES" \
    -f "$SQL_DIR/prelude.sql" -f "$SQL_DIR/load_guests.sql" &
pid_guests=$!
psql_db -d "$DB" -v n_couples="$N_COUPLES" -v n_vendors="$N_VENDORS" -v n_payments="$N_PAYMENTS" \
    -v n_photos="$N_PHOTOS" -f "$SQL_DIR/prelude.sql" -f "$SQL_DIR/load_rest.sql" &
pid_rest=$!
wait "$pid_guests" || die "loading guests failed"
wait "$pid_rest" || die "loading couples/vendors/payments/photos failed"

TABLE_BYTES_SQL="SELECT sum(pg_table_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
# Top up guests (deterministically) until the target is reached.
for _ in $(seq 200); do
    have=$(scalar "$TABLE_BYTES_SQL")
    [[ $have -ge $TARGET_BYTES ]] && break
    more=$(awk -v t="$TARGET_BYTES" -v h="$have" -v n="$N_GUESTS" -v g="$(scalar "SELECT pg_table_size('guests')")" \
        'BEGIN { k = int((t - h) * 1.02 * n / g) + 1; if (k < 100) k = 100; print k }')
    psql_db -d "$DB" -v lo=$((N_GUESTS + 1)) -v hi=$((N_GUESTS + more)) -v n_couples="$N_COUPLES" \
        -f "$SQL_DIR/prelude.sql" -f "$SQL_DIR/load_guests.sql"
    N_GUESTS=$((N_GUESTS + more))
done
psql_db -d "$DB" -f "$SQL_DIR/finish.sql"
TABLE_BYTES=$(scalar "$TABLE_BYTES_SQL")
[[ $TABLE_BYTES -ge $TARGET_BYTES ]] || die "generated only $TABLE_BYTES bytes of table data, wanted $TARGET_BYTES"
DB_BYTES=$(scalar "SELECT pg_database_size(current_database())")
LOAD_SECONDS=$((SECONDS - t_load))
psql_db -d "$DB" -c "SELECT relname AS table, n_live_tup AS rows, pg_size_pretty(pg_table_size(relid)) AS data,
    round(pg_table_size(relid)::numeric / greatest(n_live_tup, 1)) AS bytes_per_row
    FROM pg_stat_user_tables ORDER BY pg_table_size(relid) DESC"
echo "table data $TABLE_BYTES bytes (target $TARGET_BYTES), database $DB_BYTES bytes, loaded in ${LOAD_SECONDS}s"

# Back to durable settings for the measurements (fsync=on, wal_level=replica, ...).
rm -f "$PGDATA_DIR/load.conf"
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGTMP/server.log" -m fast -w -t 120 restart >/dev/null ||
    { tail -20 "$PGTMP/server.log" >&2; die "cannot restart PostgreSQL"; }
[[ $(scalar "SHOW fsync") == on ]] || die "fsync is still off after the load"

# ---------------------------------------------------------------------------------------------
# keepsake: a key and one configuration per repository.
# ---------------------------------------------------------------------------------------------
IDENTITY="$WORK/identity.txt"
RECIPIENT=$("$KEEPSAKE_BIN" keygen -o "$IDENTITY") || die "$KEEPSAKE_BIN keygen failed"
[[ $RECIPIENT == age1* ]] || die "keepsake keygen printed '$RECIPIENT', expected an age1… recipient"
SOURCE_URL="postgres://postgres@127.0.0.1:$PORT/$DB?sslmode=disable"
write_config() { # config-file repository-url [more [repository] lines]
    {
        echo "[repository]"
        echo "url = \"$2\""
        [[ $# -gt 2 ]] && printf '%s\n' "${@:3}"
        cat <<EOF

[encryption]
recipients = ["$RECIPIENT"]
identity_file = "$IDENTITY"

[[sources]]
name = "bench"
url = "$SOURCE_URL"
password = "file:$PW_FILE"

[postgres]
bin_dir = "$PG_BIN"
EOF
    } >"$1"
}
CFG_H="$WORK/hyperfine.toml";    REPO_H="$WORK/repo-hyperfine"
CFG_R="$WORK/rss.toml";          REPO_R="$WORK/repo-rss"
CFG_I="$WORK/incremental.toml";  REPO_I="$WORK/repo-incremental"
write_config "$CFG_H" "file://$REPO_H"
write_config "$CFG_R" "file://$REPO_R"
write_config "$CFG_I" "file://$REPO_I"
"$KEEPSAKE_BIN" --config "$CFG_H" config check

q() { printf '%q' "$1"; }
KS=$(q "$KEEPSAKE_BIN")
PG_DUMP=$(q "$PG_BIN/pg_dump")
DUMP_ARGS="-h 127.0.0.1 -p $PORT -U postgres -d $DB"
DROPDB=$(q "$PG_BIN/dropdb")
ADMIN="-h 127.0.0.1 -p $PORT -U postgres"
target_url() { q "postgres://postgres@127.0.0.1:$PORT/$1?sslmode=disable"; } # for restore --target

# hyperfine results: median / standard deviation of a command (by name), ratios.
median() { jq -r --arg n "$2" '.results[] | select(.command == $n) | .median' "$1"; }
stddev() { jq -r --arg n "$2" '.results[] | select(.command == $n) | .stddev' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
mean() { jq -r --arg n "$2" '.results[] | select(.command == $n) | .mean' "$1"; }
# Merge hyperfine JSON files of interleaved rounds into one, as hyperfine would report one
# invocation: all times, median, mean, σ, min, max per command. merge_rounds OUT FILE...
merge_rounds() {
    local out=$1
    shift
    jq -s '{results: ([.[].results[]] | group_by(.command) | map(
              (.[0].command) as $c | [.[].times[]] as $t | ($t | add / length) as $m
              | {command: $c, times: $t, mean: $m, min: ($t | min), max: ($t | max),
                 median: ($t | sort | if length % 2 == 1 then .[(length - 1) / 2]
                          else (.[length / 2 - 1] + .[length / 2]) / 2 end),
                 stddev: (if ($t | length) > 1
                          then ([$t[] | (. - $m) * (. - $m)] | add / (($t | length) - 1) | sqrt)
                          else null end)}))}' "$@" >"$out"
}
# $RUNS interleaved rounds of one hyperfine invocation that runs each command once (the first
# round also warms up), merged into $OUT_DIR/hyperfine-NAME.json. interleaved NAME ARGS...
# (hyperfine's --prepare and -n arguments).
interleaved() {
    local name=$1 round warm
    shift
    for round in $(seq "$RUNS"); do
        warm=0
        [[ $round -eq 1 ]] && warm=$WARMUP
        hyperfine --shell bash --warmup "$warm" --runs 1 \
            --export-json "$OUT_DIR/hyperfine-$name-round$round.json" "$@"
    done
    merge_rounds "$OUT_DIR/hyperfine-$name.json" "$OUT_DIR/hyperfine-$name"-round*.json
}

if [[ $ONLY_S3 -eq 0 ]]; then
    # -----------------------------------------------------------------------------------------
    # e. Backup time: the three commands in $RUNS interleaved rounds (as the restores, h).
    # -----------------------------------------------------------------------------------------
    # One invocation of $RUNS runs per command measured each command in its own stretch of
    # time; on this shared machine the load drifts between stretches (2026-11-26 15:41:
    # keepsake 1.132 × pg_dump measured that way, 1.06 × the run before).
    log "e. backup time (hyperfine, $WARMUP warmup, then $RUNS interleaved rounds of one run each)"
    NAME_BASE='pg_dump -Fc -Z0 > /dev/null'
    NAME_AGE='pg_dump -Fc | age -r RECIPIENT > file'
    NAME_KS='keepsake backup --type full (fresh repository)'
    interleaved backup \
        --prepare 'true' \
        --prepare "rm -f $(q "$WORK/dump.age")" \
        --prepare "rm -rf $(q "$REPO_H") && $KS --config $(q "$CFG_H") init" \
        -n "$NAME_BASE" "$PG_DUMP -Fc -Z0 $DUMP_ARGS > /dev/null" \
        -n "$NAME_AGE" "set -o pipefail; $PG_DUMP -Fc $DUMP_ARGS | age -r $RECIPIENT > $(q "$WORK/dump.age")" \
        -n "$NAME_KS" "$KS --config $(q "$CFG_H") backup --source bench --type full"
    AGE_FILE_BYTES=$(stat -c %s "$WORK/dump.age")
    M_BASE=$(median "$OUT_DIR/hyperfine-backup.json" "$NAME_BASE")
    M_AGE=$(median "$OUT_DIR/hyperfine-backup.json" "$NAME_AGE")
    M_KS=$(median "$OUT_DIR/hyperfine-backup.json" "$NAME_KS")
    [[ -n $M_BASE && -n $M_AGE && -n $M_KS ]] || die "could not read medians from $OUT_DIR/hyperfine-backup.json"
    R_KS=$(ratio "$M_KS" "$M_BASE")
    R_AGE=$(ratio "$M_AGE" "$M_BASE")
    printf 'medians: baseline %.3fs, pg_dump|age %.3fs (%s×), keepsake %.3fs (%s× baseline)\n' \
        "$M_BASE" "$M_AGE" "$R_AGE" "$M_KS" "$R_KS"

    # -----------------------------------------------------------------------------------------
    # f. Peak RSS of a full backup.
    # -----------------------------------------------------------------------------------------
    log "f. peak RSS of keepsake backup --type full"
    rm -rf "$REPO_R"
    "$KEEPSAKE_BIN" --config "$CFG_R" init >/dev/null
    /usr/bin/time -v -o "$OUT_DIR/rss-time.txt" \
        "$KEEPSAKE_BIN" --config "$CFG_R" backup --source bench --type full --json >"$OUT_DIR/rss-backup.json"
    RSS_KB=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$OUT_DIR/rss-time.txt")
    [[ $RSS_KB =~ ^[0-9]+$ ]] || die "no 'Maximum resident set size' in $OUT_DIR/rss-time.txt"
    RSS_MIB=$(awk -v k="$RSS_KB" 'BEGIN { printf "%.1f", k / 1024 }')
    RSS_WALL=$(awk -F': ' '/Elapsed \(wall clock\)/ { print $2 }' "$OUT_DIR/rss-time.txt")
    echo "peak RSS ${RSS_MIB} MiB (${RSS_KB} kB), wall clock $RSS_WALL"

    # -----------------------------------------------------------------------------------------
    # g. Incremental after a realistic change: keepsake stored bytes vs restic data_added.
    # -----------------------------------------------------------------------------------------
    log "g. incremental size: keepsake vs restic"
    export RESTIC_REPOSITORY="$WORK/restic" RESTIC_PASSWORD="keepsake-bench-not-a-secret"
    restic --no-cache init --repository-version 2 >/dev/null
    restic_backup() { # -> summary JSON line on stdout
        "$PG_BIN/pg_dump" -Fc -Z0 "${CONN[@]}" -d "$DB" |
            restic --no-cache backup --json --stdin --stdin-filename db.dump |
            jq -c 'select(.message_type == "summary")'
    }
    "$KEEPSAKE_BIN" --config "$CFG_I" init >/dev/null
    "$KEEPSAKE_BIN" --config "$CFG_I" backup --source bench --type full --json >"$OUT_DIR/keepsake-full.json"
    FULL_ID=$(jq -r '.[0].id' "$OUT_DIR/keepsake-full.json")
    FULL_STORED=$(jq -r '.[0].stored_bytes' "$OUT_DIR/keepsake-full.json")
    FULL_LOGICAL=$(jq -r '.[0].logical_bytes' "$OUT_DIR/keepsake-full.json")
    N_GUESTS_FULL=$(scalar "SELECT count(*) FROM guests")
    restic_backup >"$OUT_DIR/restic-full.json"
    RESTIC1_ADDED=$(jq -r '.data_added' "$OUT_DIR/restic-full.json")
    RESTIC1_SIZE=$(du -sb "$RESTIC_REPOSITORY" | cut -f1)
    ZSTD_BYTES=$("$PG_BIN/pg_dump" -Fc -Z0 "${CONN[@]}" -d "$DB" | zstd -3 -T0 -q -c | wc -c)
    if [[ $RESTORE -eq 1 ]]; then
        "$PG_BIN/pg_dump" -Fc -Z0 "${CONN[@]}" -d "$DB" -f "$WORK/restore.dump"
        # What most users have: pg_dump -Fc's default (zlib) compression.
        "$PG_BIN/pg_dump" -Fc "${CONN[@]}" -d "$DB" -f "$WORK/restore-z.dump"
    fi

    psql_db -d "$DB" -v n_guests="$N_GUESTS" -v n_vendors="$N_VENDORS" -f "$SQL_DIR/change.sql"
    CHANGED=$(scalar "SELECT count(*) FROM guests WHERE notes LIKE 'RSVP updated online%' OR id > $N_GUESTS")
    echo "change applied: $CHANGED guests rows updated or inserted, 10 deleted, 5 vendors updated"

    "$KEEPSAKE_BIN" --config "$CFG_I" backup --source bench --type incremental --json >"$OUT_DIR/keepsake-incremental.json"
    INC_STORED=$(jq -r '.[0].stored_bytes' "$OUT_DIR/keepsake-incremental.json")
    INC_TYPE=$(jq -r '.[0].type' "$OUT_DIR/keepsake-incremental.json")
    [[ $INC_TYPE == incremental ]] || die "keepsake took a '$INC_TYPE' backup, expected incremental"
    restic_backup >"$OUT_DIR/restic-incremental.json"
    RESTIC2_ADDED=$(jq -r '.data_added' "$OUT_DIR/restic-incremental.json")
    RESTIC2_PACKED=$(jq -r '.data_added_packed // empty' "$OUT_DIR/restic-incremental.json")
    RESTIC2_SIZE=$(du -sb "$RESTIC_REPOSITORY" | cut -f1)
    RESTIC_GROWTH=$((RESTIC2_SIZE - RESTIC1_SIZE))
    KS_REPO_SIZE=$(du -sb "$REPO_I" | cut -f1)
    R_INC=$(ratio "$INC_STORED" "$RESTIC2_ADDED")
    echo "keepsake incremental stored $INC_STORED bytes; restic data_added $RESTIC2_ADDED bytes (ratio $R_INC);" \
        "restic repository $RESTIC2_SIZE bytes (+$RESTIC_GROWTH on disk for the second backup)"

    # -----------------------------------------------------------------------------------------
    # h. Optional: restore time.
    # -----------------------------------------------------------------------------------------
    if [[ $RESTORE -eq 1 ]]; then
        # Interleaved: $RUNS rounds of one hyperfine invocation that runs each command once
        # (the first round also warms up), merged. One invocation of $RUNS runs per command
        # measured each command in a different stretch of time, and on this shared machine the
        # load drifts between stretches (2026-11-26: pg_restore -j2 took 9.6 s in one
        # invocation, 7.8-8.4 s interleaved in the lab the same hour). Every run starts from a
        # checkpoint, so no run pays for writing out the pages an earlier run left dirty
        # (pg_restore leaves more: its rows are written again when their hint bits are set).
        log "h. restore time (hyperfine, $WARMUP warmup, then $RUNS interleaved rounds of one run each)"
        CREATEDB=$(q "$PG_BIN/createdb")
        PG_RESTORE=$(q "$PG_BIN/pg_restore")
        CHECKPOINT="$(q "$PG_BIN/psql") $ADMIN -d postgres -qAt -c CHECKPOINT"
        NAME_R_KS='keepsake restore --create'
        NAME_R_PG='pg_restore -d (local -Fc -Z0 file)'
        NAME_R_PG2='pg_restore -j2 -d (local -Fc -Z0 file)'
        NAME_R_PGZ='pg_restore -j2 -d (local -Fc file, default compression)'
        interleaved restore \
            --prepare "$DROPDB $ADMIN --if-exists restore_keepsake && $CHECKPOINT" \
            --prepare "$DROPDB $ADMIN --if-exists restore_pg && $CREATEDB $ADMIN restore_pg && $CHECKPOINT" \
            --prepare "$DROPDB $ADMIN --if-exists restore_pg_j2 && $CREATEDB $ADMIN restore_pg_j2 && $CHECKPOINT" \
            --prepare "$DROPDB $ADMIN --if-exists restore_pg_z && $CREATEDB $ADMIN restore_pg_z && $CHECKPOINT" \
            -n "$NAME_R_KS" "$KS --config $(q "$CFG_I") restore $FULL_ID --target $(target_url restore_keepsake) --target-password file:$(q "$PW_FILE") --create" \
            -n "$NAME_R_PG" "$PG_RESTORE $ADMIN -d restore_pg $(q "$WORK/restore.dump")" \
            -n "$NAME_R_PG2" "$PG_RESTORE $ADMIN -j 2 -d restore_pg_j2 $(q "$WORK/restore.dump")" \
            -n "$NAME_R_PGZ" "$PG_RESTORE $ADMIN -j 2 -d restore_pg_z $(q "$WORK/restore-z.dump")"
        for d in restore_keepsake restore_pg restore_pg_j2 restore_pg_z; do
            got=$(psql_db -d "$d" -At -c "SELECT count(*) FROM guests")
            [[ $got -eq $N_GUESTS_FULL ]] || die "restored database $d has $got guests, expected $N_GUESTS_FULL"
            "$PG_BIN/dropdb" "${CONN[@]}" "$d"
        done
        M_R_KS=$(median "$OUT_DIR/hyperfine-restore.json" "$NAME_R_KS")
        M_R_PG=$(median "$OUT_DIR/hyperfine-restore.json" "$NAME_R_PG")
        M_R_PG2=$(median "$OUT_DIR/hyperfine-restore.json" "$NAME_R_PG2")
        M_R_PGZ=$(median "$OUT_DIR/hyperfine-restore.json" "$NAME_R_PGZ")
        echo "restored databases checked ($N_GUESTS_FULL guests each) and dropped"
    fi
fi  # ONLY_S3 == 0

# ---------------------------------------------------------------------------------------------
# s. Optional: an S3 repository (Garage on loopback) against a folder repository.
# ---------------------------------------------------------------------------------------------
hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
# Whether an HTTP server answers `GET path` on 127.0.0.1:port at all (Garage says 403 to this
# anonymous request; any HTTP response will do).
answers_http() { # port path
    # shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments
    timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n" "$2" "$1" >&3
        head -c 12 <&3' _ "$1" "$2" 2>/dev/null | grep -q '^HTTP/1\.'
}
S3_BUCKET=keepsake-bench
# Wait (at most 60 s) until Garage has used no more than 20 ms of CPU in 2 s: the background
# work a burst of uploads leaves behind (block reference counts, Merkle trees) must not land in
# the next measurement, where it would slow whichever command runs first.
garage_settle() {
    local prev now
    prev=$(awk '{print $14 + $15}' "/proc/$GARAGE_PID/stat" 2>/dev/null) || return 0
    for _ in $(seq 30); do
        sleep 2
        now=$(awk '{print $14 + $15}' "/proc/$GARAGE_PID/stat" 2>/dev/null) || return 0
        ((now - prev <= 2)) && return 0
        prev=$now
    done
}
S3_REGION=garage # Garage's s3_region: the only region it accepts in signatures
# One attempt at starting Garage in DIR as tests/integration/support/garage.rs does, except for
# the metadata engine: Garage's default, LMDB (GARAGE_DB_ENGINE=sqlite for the tests' engine,
# which made Garage spend ~0.7 CPU-s more per backup here, on the cores keepsake shares), one
# replica, S3 API and RPC on free loopback ports, no admin API or web endpoint;
# `server --single-node --default-bucket` creates the layout, the key and the bucket before it
# opens its S3 port. Sets GARAGE_READY=1 when our server answers, 0 when a port was taken
# (try again on new ports); dies on any other failure. A watcher stops Garage even if this
# script is killed with SIGKILL (the EXIT trap stops it otherwise).
start_garage() { # dir
    local dir=$1 probe t0 v unset_env=()
    GARAGE_READY=0
    S3_PORT=$(free_port) || die "no free TCP port found"
    RPC_PORT=$(free_port) || die "no free TCP port found"
    [[ $RPC_PORT != "$S3_PORT" ]] || return 0
    S3_ACCESS_KEY="GK$(hex 12)"
    S3_SECRET_KEY=$(hex 32)
    rm -rf "$dir"
    mkdir -p "$dir"
    (
        umask 077
        cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "$GARAGE_DB_ENGINE"
replication_factor = 1
disable_scrub = true
# keepsake's packs are age-encrypted (incompressible): compressing them only burns the
# CPU this 2-core machine shares between keepsake, PostgreSQL and the server.
compression_level = "none"

rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(hex 32)"

[s3_api]
s3_region = "$S3_REGION"
api_bind_addr = "127.0.0.1:$S3_PORT"
EOF
    )
    # Garage reads GARAGE_RPC_SECRET, GARAGE_LOG_* … from the environment: only ours may count.
    for v in $(compgen -e); do
        [[ $v == GARAGE_* ]] && unset_env+=(-u "$v")
    done
    (
        script_pid=$$ garage_pid=$BASHPID
        (
            while kill -0 "$script_pid" 2>/dev/null; do
                kill -0 "$garage_pid" 2>/dev/null || exit 0
                sleep 1
            done
            kill -TERM "$garage_pid" 2>/dev/null
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                kill -0 "$garage_pid" 2>/dev/null || exit 0
                sleep 1
            done
            kill -KILL "$garage_pid" 2>/dev/null
        ) </dev/null >/dev/null 2>&1 &
        cd /
        exec env ${unset_env[@]+"${unset_env[@]}"} \
            GARAGE_DEFAULT_ACCESS_KEY="$S3_ACCESS_KEY" GARAGE_DEFAULT_SECRET_KEY="$S3_SECRET_KEY" \
            GARAGE_DEFAULT_BUCKET="$S3_BUCKET" RUST_LOG=netapp=info,garage=info NO_COLOR=1 \
            "$GARAGE_BIN" -c "$dir/garage.toml" server --single-node --default-bucket
    ) </dev/null >"$dir/garage.log" 2>&1 &
    GARAGE_PID=$!
    # Garage logs every request it gets: a probe path of our own tells our server apart from
    # another one that took the port between free_port and Garage's bind.
    probe="/$S3_BUCKET/keepsake-bench-ready-probe-$(hex 8)"
    t0=$SECONDS
    while :; do
        if ! kill -0 "$GARAGE_PID" 2>/dev/null; then
            wait "$GARAGE_PID" || true
            GARAGE_PID=""
            grep -q 'Address already in use' "$dir/garage.log" && return 0
            tail -n 30 "$dir/garage.log" >&2
            die "garage exited before answering on 127.0.0.1:$S3_PORT (its log is above)"
        fi
        # A taken RPC port makes Garage exit; with a taken S3 port it runs on without its S3 API.
        if grep -q 'S3 API server exited with error' "$dir/garage.log"; then
            stop_garage
            return 0
        fi
        if answers_http "$S3_PORT" "$probe"; then
            # Garage writes the request line before it answers.
            if grep -qF "$probe" "$dir/garage.log"; then
                GARAGE_READY=1
            else
                stop_garage
            fi
            return 0
        fi
        if ((SECONDS - t0 > 60)); then
            stop_garage
            tail -n 30 "$dir/garage.log" >&2
            die "garage did not answer on 127.0.0.1:$S3_PORT within 60 s (its log is above)"
        fi
        sleep 0.05
    done
}
# The S3 request counts of KEEPSAKE_LOG=info output: the line keepsake logs when the store
# closes ("s3://bucket/prefix at ENDPOINT: N requests (GET a, HEAD b, …), R retries"), as
# "kind count" lines: `requests N`, `retries R`, then one per kind, summed over such lines.
s3_requests() { # log-file
    local lines
    lines=$(sed 's/\x1b\[[0-9;]*m//g' "$1" |
        grep -E "s3://$S3_BUCKET/[^ ]* at [^ ]+: [0-9]+ requests \(.*\), [0-9]+ retries") ||
        die "no S3 request summary line in $1 (is it logged at info level?)"
    [[ $(wc -l <<<"$lines") -eq 1 ]] ||
        echo "warning: $(wc -l <<<"$lines") S3 request summary lines in $1: adding them up" >&2
    awk '{
        s = $0
        sub(/.*: /, "", s)                       # "N requests (GET a, …), R retries"
        n = split(s, w, " "); total += w[1]; retries += w[n - 1]
        sub(/^[0-9]+ requests \(/, "", s); sub(/\), [0-9]+ retries.*$/, "", s)
        k = split(s, parts, ", ")
        for (i = 1; i <= k; i++) { split(parts[i], kv, " "); count[kv[1]] += kv[2] }
    }
    END {
        print "requests", total + 0; print "retries", retries + 0
        for (c in count) print c, count[c] | "sort"
    }' <<<"$lines"
}
req() { awk -v k="$2" '$1 == k { print $2 }' <<<"$1"; } # count of kind $2 in s3_requests output $1
per_gib() { awk -v n="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", n * 1073741824 / b; else print "n/a" }'; }

if [[ $S3 -eq 1 ]]; then
    log "s. S3: starting a single-node Garage server on loopback ($GARAGE_VERSION)"
    GARAGE_DIR="$WORK/garage" # config, metadata, data (every backup below) and log
    for attempt in 1 2 3; do
        start_garage "$GARAGE_DIR"
        [[ $GARAGE_READY -eq 1 ]] && break
        echo "garage could not get its ports (attempt $attempt of 3)"
    done
    [[ $GARAGE_READY -eq 1 ]] || { tail -n 30 "$GARAGE_DIR/garage.log" >&2; die "garage could not get its ports in 3 attempts"; }
    echo "Garage S3 API on http://127.0.0.1:$S3_PORT, bucket $S3_BUCKET, region $S3_REGION (pid $GARAGE_PID)"

    # The same configuration as the folder repositories' but for [repository]; keys by file:.
    S3_KEY_ID_FILE="$WORK/s3-access-key-id"
    S3_SECRET_FILE="$WORK/s3-secret-access-key"
    (
        umask 077
        printf '%s' "$S3_ACCESS_KEY" >"$S3_KEY_ID_FILE"
        printf '%s' "$S3_SECRET_KEY" >"$S3_SECRET_FILE"
    )
    CFG_SF="$WORK/s3-folder.toml"; REPO_SF="$WORK/repo-s3-folder"
    CFG_S3="$WORK/s3.toml"
    write_config "$CFG_SF" "file://$REPO_SF"
    write_config "$CFG_S3" "s3://$S3_BUCKET/bench-$(hex 4)" \
        "endpoint = \"http://127.0.0.1:$S3_PORT\"" "region = \"$S3_REGION\"" "path_style = true" \
        "access_key_id = \"file:$S3_KEY_ID_FILE\"" "secret_access_key = \"file:$S3_SECRET_FILE\""
    chmod 600 "$CFG_S3"
    "$KEEPSAKE_BIN" --config "$CFG_S3" config check
    # For S3 what rm -rf + init is for a folder: a new, empty prefix (Garage keeps the old ones'
    # objects until it is stopped; they are not in the way).
    S3_FRESH="$WORK/s3-fresh-repository.sh"
    cat >"$S3_FRESH" <<EOF
#!/usr/bin/env bash
# Point $CFG_S3 at a new, empty prefix and create a repository there.
set -euo pipefail
prefix=bench-\$(date +%s%N)
sed -i 's|^url = "s3://.*|url = "s3://$S3_BUCKET/'"\$prefix"'"|' $(q "$CFG_S3")
$KS --config $(q "$CFG_S3") init >/dev/null
EOF
    chmod +x "$S3_FRESH"
    "$S3_FRESH"
    echo "S3 repository created at $(sed -n 's/^url = "\(s3:.*\)"$/\1/p' "$CFG_S3")"
    S3_GUESTS=$(scalar "SELECT count(*) FROM guests")

    garage_settle
    log "s. backup time, folder vs S3 repository (hyperfine, $WARMUP warmup + $RUNS runs each)"
    NAME_SB_F='keepsake backup --type full (folder repository, fresh)'
    NAME_SB_S='keepsake backup --type full (S3 repository, fresh prefix)'
    hyperfine --shell bash --warmup "$WARMUP" --runs "$RUNS" \
        --export-json "$OUT_DIR/hyperfine-s3-backup.json" --export-markdown "$OUT_DIR/hyperfine-s3-backup.md" \
        --prepare "rm -rf $(q "$REPO_SF") && $KS --config $(q "$CFG_SF") init" \
        --prepare "$(q "$S3_FRESH")" \
        -n "$NAME_SB_F" "$KS --config $(q "$CFG_SF") backup --source bench --type full" \
        -n "$NAME_SB_S" "$KS --config $(q "$CFG_S3") backup --source bench --type full"
    M_SB_F=$(median "$OUT_DIR/hyperfine-s3-backup.json" "$NAME_SB_F")
    M_SB_S=$(median "$OUT_DIR/hyperfine-s3-backup.json" "$NAME_SB_S")
    [[ -n $M_SB_F && -n $M_SB_S ]] || die "could not read medians from $OUT_DIR/hyperfine-s3-backup.json"
    R_SB=$(ratio "$M_SB_S" "$M_SB_F")
    printf 'medians: folder %.3fs, S3 %.3fs (%s× folder)\n' "$M_SB_F" "$M_SB_S" "$R_SB"

    log "s. S3 requests of one full backup (KEEPSAKE_LOG=info)"
    "$S3_FRESH"
    KEEPSAKE_LOG=info NO_COLOR=1 "$KEEPSAKE_BIN" --config "$CFG_S3" backup --source bench --type full --json \
        >"$OUT_DIR/s3-backup.json" 2>"$OUT_DIR/s3-backup-log.txt" ||
        { tail -n 20 "$OUT_DIR/s3-backup-log.txt" >&2; die "keepsake backup to S3 failed"; }
    S3_ID=$(jq -r '.[0].id' "$OUT_DIR/s3-backup.json")
    S3_LOGICAL=$(jq -r '.[0].logical_bytes' "$OUT_DIR/s3-backup.json")
    S3_STORED=$(jq -r '.[0].stored_bytes' "$OUT_DIR/s3-backup.json")
    REQ_B=$(s3_requests "$OUT_DIR/s3-backup-log.txt")
    echo "backup $S3_ID: logical $S3_LOGICAL B, stored $S3_STORED B; S3: $(tr '\n' ' ' <<<"$REQ_B")"
    # The folder repository holds the last timed backup (fresh repository each run): its only one.
    SF_ID=$("$KEEPSAKE_BIN" --config "$CFG_SF" list --json | jq -r 'last | .id')
    [[ -n $SF_ID && $SF_ID != null ]] || die "no backup in $REPO_SF"

    garage_settle
    log "s. restore time, folder vs S3 repository (hyperfine, $WARMUP warmup + $RUNS runs each)"
    NAME_SR_F='keepsake restore ID --create (folder repository)'
    NAME_SR_S='keepsake restore ID --create (S3 repository)'
    hyperfine --shell bash --warmup "$WARMUP" --runs "$RUNS" \
        --export-json "$OUT_DIR/hyperfine-s3-restore.json" --export-markdown "$OUT_DIR/hyperfine-s3-restore.md" \
        --prepare "$DROPDB $ADMIN --if-exists restore_s3_folder" \
        --prepare "$DROPDB $ADMIN --if-exists restore_s3_s3" \
        -n "$NAME_SR_F" "$KS --config $(q "$CFG_SF") restore $SF_ID --target $(target_url restore_s3_folder) --target-password file:$(q "$PW_FILE") --create" \
        -n "$NAME_SR_S" "$KS --config $(q "$CFG_S3") restore $S3_ID --target $(target_url restore_s3_s3) --target-password file:$(q "$PW_FILE") --create"
    M_SR_F=$(median "$OUT_DIR/hyperfine-s3-restore.json" "$NAME_SR_F")
    M_SR_S=$(median "$OUT_DIR/hyperfine-s3-restore.json" "$NAME_SR_S")
    [[ -n $M_SR_F && -n $M_SR_S ]] || die "could not read medians from $OUT_DIR/hyperfine-s3-restore.json"
    R_SR=$(ratio "$M_SR_S" "$M_SR_F")
    printf 'medians: folder %.3fs, S3 %.3fs (%s× folder)\n' "$M_SR_F" "$M_SR_S" "$R_SR"

    log "s. S3 requests of one restore --create (KEEPSAKE_LOG=info)"
    KEEPSAKE_LOG=info NO_COLOR=1 "$KEEPSAKE_BIN" --config "$CFG_S3" restore "$S3_ID" \
        --target "postgres://postgres@127.0.0.1:$PORT/restore_s3_log?sslmode=disable" \
        --target-password "file:$PW_FILE" --create >"$OUT_DIR/s3-restore-log.txt" 2>&1 ||
        { tail -n 20 "$OUT_DIR/s3-restore-log.txt" >&2; die "keepsake restore from S3 failed"; }
    REQ_R=$(s3_requests "$OUT_DIR/s3-restore-log.txt")
    echo "restore of $S3_ID: S3: $(tr '\n' ' ' <<<"$REQ_R")"
    for d in restore_s3_folder restore_s3_s3 restore_s3_log; do
        got=$(psql_db -d "$d" -At -c "SELECT count(*) FROM guests")
        [[ $got -eq $S3_GUESTS ]] || die "restored database $d has $got guests, expected $S3_GUESTS"
        "$PG_BIN/dropdb" "${CONN[@]}" "$d"
    done
    echo "restored databases checked ($S3_GUESTS guests each) and dropped"
    stop_garage
fi

# ---------------------------------------------------------------------------------------------
# i. Summary.
# ---------------------------------------------------------------------------------------------
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t ? "PASS" : "FAIL") }'; }
secs() { awk -v s="$1" -v d="$2" 'BEGIN { printf "%.3f ± %.3f", s, d }'; }
md() { printf '%s' "${1//|/\\|}"; } # a command name inside a markdown table cell
BUILD=release
[[ $KEEPSAKE_BIN == */debug/* ]] && BUILD="debug (numbers are not meaningful)"
FLAGS=""
[[ $RESTORE -eq 1 ]] && FLAGS+=" --restore"
if [[ $ONLY_S3 -eq 1 ]]; then
    FLAGS+=" --only-s3"
elif [[ $S3 -eq 1 ]]; then
    FLAGS+=" --s3"
fi
TOOLS="$(hyperfine --version), age $(age --version), $(restic version | cut -d' ' -f1-2), $("$PG_BIN/pg_dump" --version | cut -d' ' -f1,3)"
[[ $S3 -eq 1 ]] && TOOLS+=", $(cut -d' ' -f1-2 <<<"$GARAGE_VERSION")"
s3_row() { # hyperfine-json command-name ×-folder-cell target-cell
    echo "| \`$(md "$2")\` | $(printf '%.3f' "$(median "$1" "$2")") | $(secs "$(mean "$1" "$2")" "$(stddev "$1" "$2")") | $3 | $4 |"
}
s3_requests_row() { # label kind
    local b r
    b=$(req "$REQ_B" "$2"); r=$(req "$REQ_R" "$2")
    b=${b:-0}; r=${r:-0}
    echo "| $1 | $b | $(per_gib "$b" "$S3_LOGICAL") | $(per_gib "$b" "$S3_STORED") | $r | $(per_gib "$r" "$S3_LOGICAL") | $(per_gib "$r" "$S3_STORED") |"
}
{
    echo "# keepsake backup benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), \`benches/backup.sh$FLAGS $SCALE\`"
    echo
    echo "| machine | |"
    echo "|---|---|"
    echo "| CPUs (nproc) | $(nproc) |"
    echo "| memory (free -g) | $(free -g | awk '/^Mem:/ { print $2 " GiB total, " $7 " GiB available" }') |"
    echo "| CPU | $(lscpu | grep 'Model name' | head -1 | sed 's/^Model name:[[:space:]]*//') |"
    echo "| PostgreSQL | $PG_VERSION (loaded with fsync=off, wal_level=minimal; measured with fsync=on, autovacuum=off) |"
    echo "| keepsake | $("$KEEPSAKE_BIN" --version) ($BUILD, $KEEPSAKE_BIN) |"
    echo "| tools | $TOOLS |"
    echo "| data | scale $SCALE: $(mib "$TABLE_BYTES") table data, $(mib "$DB_BYTES") database; $N_GUESTS guests, $N_PHOTOS photos, $N_PAYMENTS payments; dump $(mib "${FULL_LOGICAL:-$S3_LOGICAL}") |"
    if [[ $ONLY_S3 -eq 0 ]]; then
        echo
        echo "## Backup time (hyperfine: $WARMUP warmup, then $RUNS interleaved rounds of one run per command)"
        echo
        echo "| command | median s | mean ± σ s | × baseline | target |"
        echo "|---|---:|---:|---:|---|"
        echo "| \`$(md "$NAME_BASE")\` (baseline) | $(printf '%.3f' "$M_BASE") | $(secs "$(jq -r --arg n "$NAME_BASE" '.results[] | select(.command == $n) | .mean' "$OUT_DIR/hyperfine-backup.json")" "$(stddev "$OUT_DIR/hyperfine-backup.json" "$NAME_BASE")") | 1.000 | |"
        echo "| \`$(md "$NAME_AGE")\` | $(printf '%.3f' "$M_AGE") | $(secs "$(jq -r --arg n "$NAME_AGE" '.results[] | select(.command == $n) | .mean' "$OUT_DIR/hyperfine-backup.json")" "$(stddev "$OUT_DIR/hyperfine-backup.json" "$NAME_AGE")") | $R_AGE | |"
        echo "| \`$(md "$NAME_KS")\` | $(printf '%.3f' "$M_KS") | $(secs "$(jq -r --arg n "$NAME_KS" '.results[] | select(.command == $n) | .mean' "$OUT_DIR/hyperfine-backup.json")" "$(stddev "$OUT_DIR/hyperfine-backup.json" "$NAME_KS")") | **$R_KS** | ≤ 1.10: $(verdict "$R_KS" 1.10) |"
        echo
        echo "keepsake / \`$(md "$NAME_BASE")\` every round: $(jq -r --arg a "$NAME_KS" --arg b "$NAME_BASE" '[.results[] | select(.command == $a) | .times] as [$x] | [.results[] | select(.command == $b) | .times] as [$y] | [range(0; $x | length) | "\($x[.] / $y[.] | . * 1000 | round / 1000)"] | join(", ")' "$OUT_DIR/hyperfine-backup.json")."
        echo
        echo "## Size and memory"
        echo
        echo "| measure | value | target |"
        echo "|---|---:|---|"
        echo "| peak RSS, \`keepsake backup --type full\` (/usr/bin/time -v, largest process of the tree) | $RSS_MIB MiB | ≤ 128 MiB: $(verdict "$RSS_MIB" 128) |"
        echo "| keepsake full: logical / stored | $(mib "$FULL_LOGICAL") / $(mib "$FULL_STORED") | |"
        echo "| reference: pg_dump -Fc -Z0 \| zstd -3 / pg_dump -Fc \| age | $(mib "$ZSTD_BYTES") / $(mib "$AGE_FILE_BYTES") | |"
        echo "| keepsake incremental stored_bytes | $INC_STORED B ($(mib "$INC_STORED")) | |"
        echo "| restic second backup data_added$([[ -n $RESTIC2_PACKED ]] && echo " (packed $RESTIC2_PACKED B)") | $RESTIC2_ADDED B ($(mib "$RESTIC2_ADDED")) | |"
        echo "| keepsake incremental / restic data_added | **$R_INC** | ≤ 1: $(verdict "$R_INC" 1) |"
        echo "| restic repository total after both backups (growth on disk from the second) | $(mib "$RESTIC2_SIZE") (+$(mib "$RESTIC_GROWTH")) | |"
        echo "| keepsake incremental / restic on-disk growth (stricter: restic's data_added is before compression) | $(ratio "$INC_STORED" "$RESTIC_GROWTH") | |"
        echo "| restic first backup data_added | $(mib "$RESTIC1_ADDED") | |"
        echo "| keepsake repository total after both backups | $(mib "$KS_REPO_SIZE") | |"
        echo
        echo "Change between the backups (benches/sql/change.sql): 1% of guests updated (contiguous ids), 0.5% inserted, 10 deleted; 5 vendors updated."
        if [[ $RESTORE -eq 1 ]]; then
            echo
            echo "## Restore time (hyperfine: $WARMUP warmup, then $RUNS interleaved rounds of one run per command, each run after a CHECKPOINT; full backup / dump of the same data)"
            echo
            echo "| command | median s | × pg_restore |"
            echo "|---|---:|---:|"
            echo "| \`$(md "$NAME_R_PG")\` | $(printf '%.3f' "$M_R_PG") | 1.000 |"
            echo "| \`$(md "$NAME_R_PG2")\` | $(printf '%.3f' "$M_R_PG2") | $(ratio "$M_R_PG2" "$M_R_PG") |"
            echo "| \`$(md "$NAME_R_PGZ")\` | $(printf '%.3f' "$M_R_PGZ") | $(ratio "$M_R_PGZ" "$M_R_PG") |"
            echo "| \`$(md "$NAME_R_KS")\` | $(printf '%.3f' "$M_R_KS") | $(ratio "$M_R_KS" "$M_R_PG") |"
            R_R_PG2=$(ratio "$M_R_KS" "$M_R_PG2")
            echo
            echo "keepsake / \`pg_restore -j2\`: **$R_R_PG2** (target ≤ 1.0: $(awk -v r="$R_R_PG2" 'BEGIN { print (r <= 1.0 ? "PASS" : "FAIL") }')); every round: $(jq -r --arg a "$NAME_R_KS" --arg b "$NAME_R_PG2" '[.results[] | select(.command == $a) | .times] as [$x] | [.results[] | select(.command == $b) | .times] as [$y] | [range(0; $x | length) | "\($x[.] | . * 1000 | round / 1000) vs \($y[.] | . * 1000 | round / 1000)"] | join(", ")' "$OUT_DIR/hyperfine-restore.json") s. Against \`pg_restore -j2\` from a dump with pg_dump's default compression (what \`pg_dump -Fc\` writes unless told \`-Z0\`; not the target's baseline): $(ratio "$M_R_KS" "$M_R_PGZ")."
        fi
    fi # ONLY_S3 == 0
    if [[ $S3 -eq 1 ]]; then
        echo
        echo "## S3 repository against a folder repository (hyperfine: $WARMUP warmup, $RUNS runs; one invocation for the backups, one for the restores)"
        echo
        echo "S3: $(cut -d' ' -f1-2 <<<"$GARAGE_VERSION"), single node on 127.0.0.1 with the tests' configuration (compression off, Garage's defaults otherwise) except the metadata engine: $GARAGE_DB_ENGINE (Garage's default is lmdb; the tests use sqlite), path-style; keepsake's default \`upload_concurrency\` (2). The server shares the machine's CPUs with keepsake and PostgreSQL. Each timed backup goes to a fresh folder repository or a fresh prefix (made in \`--prepare\`); each restore creates its database (dropped in \`--prepare\`) from a full backup of the same data.$([[ $ONLY_S3 -eq 0 ]] && echo ' Measured after the change of section g (the incremental).')"
        echo
        echo "| command | median s | mean ± σ s | × folder | target |"
        echo "|---|---:|---:|---:|---|"
        s3_row "$OUT_DIR/hyperfine-s3-backup.json" "$NAME_SB_F" 1.000 ""
        s3_row "$OUT_DIR/hyperfine-s3-backup.json" "$NAME_SB_S" "**$R_SB**" "≤ 1.15: $(verdict "$R_SB" 1.15)"
        s3_row "$OUT_DIR/hyperfine-s3-restore.json" "$NAME_SR_F" 1.000 ""
        s3_row "$OUT_DIR/hyperfine-s3-restore.json" "$NAME_SR_S" "**$R_SR**" "≤ 1.15: $(verdict "$R_SR" 1.15)"
        echo
        echo "S3 requests of one more full backup to a fresh prefix (logical $(mib "$S3_LOGICAL"), stored $(mib "$S3_STORED")) and of one \`restore --create\` of it, from the line keepsake logs when it closes the store (\`KEEPSAKE_LOG=info\`: s3-backup-log.txt, s3-restore-log.txt). Per GiB of the backup's logical and stored bytes; requests every command makes whatever the size weigh more at small scales."
        echo
        echo "| requests | backup | per GiB logical | per GiB stored | restore | per GiB logical | per GiB stored |"
        echo "|---|---:|---:|---:|---:|---:|---:|"
        s3_requests_row "**all**" requests
        while read -r kind; do
            s3_requests_row "$kind" "$kind"
        done < <(printf '%s\n%s\n' "$REQ_B" "$REQ_R" | awk '$1 != "requests" && $1 != "retries" { print $1 }' | sort -u)
        s3_requests_row "retries" retries
    fi
    echo
    echo "Raw results: hyperfine-*.json$([[ $ONLY_S3 -eq 0 ]] && echo ', rss-time.txt, keepsake-*.json, restic-*.json')$([[ $S3 -eq 1 ]] && echo ', s3-backup.json, s3-*-log.txt') in this directory."
} >"$OUT_DIR/summary.md"
log "summary ($OUT_DIR/summary.md)"
cat "$OUT_DIR/summary.md"
