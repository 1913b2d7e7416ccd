#!/usr/bin/env bash
# Restore-level verification of a hosted (Supabase) database against the same data without
# the provider's objects (issue 24). One command:
#
#     benches/hosted.sh [--keep] [SCALE_GB]
#
# Starts three throwaway PostgreSQL 15 clusters (127.0.0.1, free ports, scram-sha-256):
#   hosted   initdb -U supabase_admin; database app with tests/fixtures/supabase/platform.sql
#            (as supabase_admin), ALTER ROLE postgres LOGIN PASSWORD, app.sql (as postgres),
#            then the bulk tables of benches/backup.sh (as the non-superuser postgres);
#   plain    superuser postgres; database app with only the same bulk tables and data;
#   scratch  superuser postgres; the [verification] scratch server of both configurations.
# The bulk tables are benches/sql/load_*.sql (the generator backup.sh uses, same scale, so
# the same rows), in the schema `wedbench` of both databases: app.sql already has a
# public.guests, which the generator's guests would collide with.
# Then, for each, a folder repository, `keepsake init` and `keepsake backup --type full`, and:
#   a. the output and the peak memory (VmHWM, RssAnon of the keepsake process, sampled from
#      /proc every 50 ms) of one `keepsake verify ID --level restore`, hosted and plain;
#   b. `keepsake verify ID --level restore`, hosted against plain: RUNS interleaved rounds of
#      one hyperfine invocation running each once (the order alternates; every run after a
#      CHECKPOINT of the scratch server). Target: hosted median / plain median ≤ 1.10;
#   c. `keepsake source check` on each source: hyperfine, --warmup 1, 10 runs. Target: hosted
#      median < 2 s.
# Results: $OUT_DIR (default <repo>/bench-out/hosted): summary.md (also printed),
#   summary.json, hyperfine JSON, the verify and source-check outputs.
#
# Environment: KEEPSAKE_BIN (default <repo>/target/release/keepsake; never built here),
#   OUT_DIR, RUNS (rounds, default 3), WARMUP (hyperfine warmup runs in the first round,
#   default 0: the two untimed verifies of a. warm the caches just before), PG_MAJOR (15).
# Needs root (missing tools are installed with apt-get; the servers run as `postgres`).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$SCRIPT_DIR")
SQL_DIR="$SCRIPT_DIR/sql"
FIXTURES="$ROOT/tests/fixtures/supabase"

die() { printf 'hosted.sh: error: %s\n' "$*" >&2; exit 1; }
log() { printf '\n==> %s\n' "$*"; }

KEEP=0
SCALE=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --keep) KEEP=1 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) SCALE=$1 ;;
    esac
    shift
done
[[ $SCALE =~ ^([0-9]+(\.[0-9]*)?|\.[0-9]+)$ ]] || die "SCALE_GB must be a positive number, got '$SCALE'"
awk -v s="$SCALE" 'BEGIN { exit !(s >= 0.001) }' || die "SCALE_GB must be at least 0.001, got '$SCALE'"
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-0}
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || die "RUNS must be an integer >= 1"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be an integer >= 0"
PG_MAJOR=${PG_MAJOR:-15}
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin

KEEPSAKE_BIN=${KEEPSAKE_BIN:-$ROOT/target/release/keepsake}
[[ -x $KEEPSAKE_BIN && -f $KEEPSAKE_BIN ]] ||
    die "keepsake binary not found at $KEEPSAKE_BIN: run cargo build --release first (or set KEEPSAKE_BIN)"
KEEPSAKE_BIN=$(cd "$(dirname "$KEEPSAKE_BIN")" && pwd)/$(basename "$KEEPSAKE_BIN")
[[ $(id -u) -eq 0 ]] || die "run as root: the servers run as postgres (and missing tools are installed)"
for f in platform.sql app.sql; do [[ -f $FIXTURES/$f ]] || die "missing $FIXTURES/$f"; done

# Read now: the work tree may move on while a long run goes.
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]] && COMMIT+=" (work tree modified)"
BIN_BUILT=$(date -u -r "$KEEPSAKE_BIN" '+%Y-%m-%d %H:%M UTC')

OUT_DIR=${OUT_DIR:-$ROOT/bench-out/hosted}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
# No stale results from an earlier run next to this run's.
rm -f "$OUT_DIR"/hyperfine-*.json "$OUT_DIR"/hyperfine-*.md "$OUT_DIR"/verify-*.json \
    "$OUT_DIR"/verify-*.txt "$OUT_DIR"/source-check-*.txt "$OUT_DIR"/source-check-*.json \
    "$OUT_DIR"/backup-*.json "$OUT_DIR"/summary.{md,json}

# ---------------------------------------------------------------------------------------------
# Tools.
# ---------------------------------------------------------------------------------------------
missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v jq >/dev/null || missing+=(jq)
[[ -x $PG_BIN/initdb ]] || missing+=("postgresql-$PG_MAJOR")
[[ -x $PG_BIN/psql ]] || missing+=("postgresql-client-$PG_MAJOR")
if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres

# ---------------------------------------------------------------------------------------------
# Three throwaway clusters, stopped and removed on exit (success, failure or interrupt).
# ---------------------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keepsake-hosted.XXXXXX")
chmod 755 "$WORK"
declare -A PORT=() DATA=()
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pids name
    pids=$(jobs -pr)
    # shellcheck disable=SC2086 # one pid per word
    [[ -n $pids ]] && kill $pids 2>/dev/null && wait $pids 2>/dev/null
    for name in "${!DATA[@]}"; do
        [[ -f ${DATA[$name]}/postmaster.pid ]] &&
            as_pg "$PG_BIN/pg_ctl" -D "${DATA[$name]}" -m immediate -w -t 30 stop >/dev/null 2>&1
    done
    if [[ $KEEP -eq 0 ]]; then rm -rf "$WORK"; else echo "kept $WORK (clusters stopped; repositories, configs)"; fi
    [[ $rc -ne 0 ]] && echo "hosted.sh: failed (exit $rc); the clusters were stopped and removed" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
as_pg() { (cd / && runuser -u postgres -- "$@"); }

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

# One password for every login role of every cluster (supabase_admin, postgres).
PASSWORD=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
PW_FILE="$WORK/password"
printf '%s' "$PASSWORD" >"$PW_FILE"
chmod 600 "$PW_FILE"
chown postgres: "$PW_FILE"
printf '127.0.0.1:*:*:*:%s\n' "$PASSWORD" >"$WORK/pgpass"
chmod 600 "$WORK/pgpass"
export PGPASSFILE="$WORK/pgpass"
unset PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS

start_cluster() { # name bootstrap-superuser load|measure
    local name=$1 su=$2 dir="$WORK/$1" port attempt
    mkdir "$dir"
    chown postgres: "$dir"
    as_pg "$PG_BIN/initdb" -D "$dir/data" -U "$su" --auth-local=trust --auth-host=scram-sha-256 \
        --pwfile="$PW_FILE" -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; die "initdb of $name failed"; }
    DATA[$name]="$dir/data"
    cat >>"$dir/data/postgresql.conf" <<EOF

# keepsake benchmark
include_if_exists = 'bench.conf'
include_if_exists = 'load.conf'
EOF
    # Only while loading the generated data (removed, and the server restarted, before measuring).
    if [[ $3 == load ]]; then
        cat >"$dir/data/load.conf" <<EOF
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
EOF
        chown postgres: "$dir/data/load.conf"
    fi
    # autovacuum off, as in backup.sh: no background work lands in another command's time.
    for attempt in 1 2 3 4 5; do
        port=$(free_port) || die "no free TCP port found"
        cat >"$dir/data/bench.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_buffers = 256MB
maintenance_work_mem = 256MB
max_wal_size = 4GB
checkpoint_timeout = 30min
autovacuum = off
EOF
        chown postgres: "$dir/data/bench.conf"
        as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null 2>&1 && break
        [[ $attempt -eq 5 ]] && { tail -20 "$dir/server.log" >&2; die "cannot start the $name cluster"; }
    done
    PORT[$name]=$port
    echo "$name: PostgreSQL on 127.0.0.1:$port (bootstrap superuser $su), data in $dir/data"
}
end_load() { # name: back to durable settings
    rm -f "${DATA[$1]}/load.conf"
    as_pg "$PG_BIN/pg_ctl" -D "${DATA[$1]}" -l "$WORK/$1/server.log" -m fast -w -t 120 restart >/dev/null ||
        { tail -20 "$WORK/$1/server.log" >&2; die "cannot restart the $1 cluster"; }
    [[ $(pq "$1" postgres app -At -c "SHOW fsync") == on ]] || die "fsync is still off on $1 after the load"
}
pq() { # cluster user database psql-args...
    local c=$1 u=$2 d=$3
    shift 3
    "$PG_BIN/psql" -h 127.0.0.1 -p "${PORT[$c]}" -U "$u" -d "$d" -X -q -v ON_ERROR_STOP=1 "$@"
}

log "starting three PostgreSQL $PG_MAJOR clusters in $WORK"
start_cluster hosted supabase_admin load
start_cluster plain postgres load
start_cluster scratch postgres measure
PG_VERSION=$(pq scratch postgres postgres -At -c 'SHOW server_version')

# ---------------------------------------------------------------------------------------------
# Data: the Supabase imitation, then the same bulk tables in both app databases.
# ---------------------------------------------------------------------------------------------
log "hosted: platform.sql as supabase_admin, app.sql as postgres"
pq hosted supabase_admin postgres -c "CREATE DATABASE app"
pq hosted supabase_admin app -f "$FIXTURES/platform.sql" >"$WORK/hosted/fixtures.log" 2>&1 ||
    { tail -20 "$WORK/hosted/fixtures.log" >&2; die "platform.sql failed"; }
pq hosted supabase_admin app -c "ALTER ROLE postgres LOGIN PASSWORD '$PASSWORD'"
pq hosted postgres app -f "$FIXTURES/app.sql" >>"$WORK/hosted/fixtures.log" 2>&1 ||
    { tail -20 "$WORK/hosted/fixtures.log" >&2; die "app.sql failed"; }
[[ $(pq hosted postgres app -At -c "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == f ]] ||
    die "postgres is still a superuser on the hosted cluster"
pq plain postgres postgres -c "CREATE DATABASE app"

BULK_SCHEMA=wedbench
rows() { awk -v s="$SCALE" -v r="$1" -v m="$2" 'BEGIN { n = int(s * r); if (n < m) n = m; print n }'; }
# As backup.sh: rows per GiB calibrated so that the total lands ~3% above the target.
N_COUPLES=$(rows 20000 20)
N_VENDORS=$(rows 12000 20)
N_PAYMENTS=$(rows 1800000 100)
N_PHOTOS=$(rows 380000 100)
TARGET_BYTES=$(awk -v s="$SCALE" 'BEGIN { printf "%.0f", s * 1073741824 }')
TABLE_BYTES_SQL="SELECT sum(pg_table_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '$BULK_SCHEMA' AND c.relkind = 'r'"
COUNTS_SQL="SELECT string_agg(t || '=' || n, ' ' ORDER BY t) FROM (
    SELECT 'couples' t, count(*) n FROM $BULK_SCHEMA.couples UNION ALL SELECT 'vendors', count(*) FROM $BULK_SCHEMA.vendors
    UNION ALL SELECT 'guests', count(*) FROM $BULK_SCHEMA.guests UNION ALL SELECT 'payments', count(*) FROM $BULK_SCHEMA.payments
    UNION ALL SELECT 'photos', count(*) FROM $BULK_SCHEMA.photos) x"
declare -A TABLE_BYTES=() DB_BYTES=() COUNTS=()
load_bulk() { # cluster: the generator of backup.sh, as postgres, in schema $BULK_SCHEMA of app
    local c=$1 t0=$SECONDS n_guests have more pid_guests pid_rest
    n_guests=$(rows 1200000 100)
    # The generator's names are unqualified: the search path puts them in $BULK_SCHEMA.
    local -x PGOPTIONS="-c search_path=$BULK_SCHEMA"
    pq "$c" postgres app -c "CREATE SCHEMA $BULK_SCHEMA"
    pq "$c" postgres app -f "$SQL_DIR/schema.sql"
    pq "$c" postgres app -v lo=1 -v hi="$n_guests" -v n_couples="$N_COUPLES" \
        -f "$SQL_DIR/prelude.sql" -f "$SQL_DIR/load_guests.sql" &
    pid_guests=$!
    pq "$c" postgres app -v n_couples="$N_COUPLES" -v n_vendors="$N_VENDORS" -v n_payments="$N_PAYMENTS" \
        -v n_photos="$N_PHOTOS" -f "$SQL_DIR/prelude.sql" -f "$SQL_DIR/load_rest.sql" &
    pid_rest=$!
    wait "$pid_guests" || die "$c: loading guests failed"
    wait "$pid_rest" || die "$c: loading couples/vendors/payments/photos failed"
    # Top up guests (deterministically) until the target is reached, as backup.sh does.
    for _ in $(seq 200); do
        have=$(pq "$c" postgres app -At -c "$TABLE_BYTES_SQL")
        [[ $have -ge $TARGET_BYTES ]] && break
        more=$(awk -v t="$TARGET_BYTES" -v h="$have" -v n="$n_guests" \
            -v g="$(pq "$c" postgres app -At -c "SELECT pg_table_size('$BULK_SCHEMA.guests')")" \
            'BEGIN { k = int((t - h) * 1.02 * n / g) + 1; if (k < 100) k = 100; print k }')
        pq "$c" postgres app -v lo=$((n_guests + 1)) -v hi=$((n_guests + more)) -v n_couples="$N_COUPLES" \
            -f "$SQL_DIR/prelude.sql" -f "$SQL_DIR/load_guests.sql"
        n_guests=$((n_guests + more))
    done
    # On the hosted cluster postgres is no superuser: VACUUM warns about every shared catalog.
    PGOPTIONS="$PGOPTIONS -c client_min_messages=error" pq "$c" postgres app -f "$SQL_DIR/finish.sql"
    TABLE_BYTES[$c]=$(pq "$c" postgres app -At -c "$TABLE_BYTES_SQL")
    DB_BYTES[$c]=$(pq "$c" postgres app -At -c "SELECT pg_database_size(current_database())")
    COUNTS[$c]=$(pq "$c" postgres app -At -c "$COUNTS_SQL")
    [[ ${TABLE_BYTES[$c]} -ge $TARGET_BYTES ]] || die "$c: only ${TABLE_BYTES[$c]} bytes of table data, wanted $TARGET_BYTES"
    echo "$c: ${TABLE_BYTES[$c]} bytes of bulk table data, database ${DB_BYTES[$c]} bytes; ${COUNTS[$c]}; loaded in $((SECONDS - t0))s"
}
log "loading ~$SCALE GiB of bulk tables into hosted, then plain (fsync=off while loading)"
load_bulk hosted
load_bulk plain
[[ ${COUNTS[hosted]} == "${COUNTS[plain]}" ]] ||
    die "the bulk tables differ: hosted ${COUNTS[hosted]}, plain ${COUNTS[plain]}"
end_load hosted
end_load plain

# ---------------------------------------------------------------------------------------------
# keepsake: one key, a configuration, repository and full backup per source.
# ---------------------------------------------------------------------------------------------
IDENTITY="$WORK/identity.txt"
RECIPIENT=$("$KEEPSAKE_BIN" keygen --output "$IDENTITY") || die "$KEEPSAKE_BIN keygen failed"
[[ $RECIPIENT == age1* ]] || die "keepsake keygen printed '$RECIPIENT', expected an age1… recipient"
q() { printf '%q' "$1"; }
KS=$(q "$KEEPSAKE_BIN")
declare -A CFG=() ID=() LOGICAL=() STORED=()
for c in hosted plain; do
    CFG[$c]="$WORK/$c.toml"
    cat >"${CFG[$c]}" <<EOF
[repository]
url = "file://$WORK/repo-$c"

[encryption]
recipients = ["$RECIPIENT"]
identity_file = "$IDENTITY"

[[sources]]
name = "$c"
url = "postgres://postgres@127.0.0.1:${PORT[$c]}/app?sslmode=disable"
password = "file:$PW_FILE"

[postgres]
bin_dir = "$PG_BIN"

[daemon]
state_dir = "$WORK/state-$c"

[verification]
scratch_url = "postgres://postgres@127.0.0.1:${PORT[scratch]}/postgres?sslmode=disable"
scratch_password = "file:$PW_FILE"
EOF
    "$KEEPSAKE_BIN" --config "${CFG[$c]}" config check >/dev/null
    "$KEEPSAKE_BIN" --config "${CFG[$c]}" init >/dev/null
    log "$c: keepsake backup --type full"
    "$KEEPSAKE_BIN" --config "${CFG[$c]}" backup --type full --json >"$OUT_DIR/backup-$c.json"
    ID[$c]=$(jq -r '.[0].id' "$OUT_DIR/backup-$c.json")
    LOGICAL[$c]=$(jq -r '.[0].logical_bytes' "$OUT_DIR/backup-$c.json")
    STORED[$c]=$(jq -r '.[0].stored_bytes' "$OUT_DIR/backup-$c.json")
    [[ -n ${ID[$c]} && ${ID[$c]} != null ]] || die "no backup id in $OUT_DIR/backup-$c.json"
    echo "$c: backup ${ID[$c]}, logical ${LOGICAL[$c]} B, stored ${STORED[$c]} B"
done

# ---------------------------------------------------------------------------------------------
# a. One verify of each, untimed by hyperfine: its output, and its peak memory.
# ---------------------------------------------------------------------------------------------
declare -A HWM=() ANON=() WALL=()
measure_verify() { # cluster: the keepsake process's own VmHWM and largest RssAnon (KiB)
    # Sampled from /proc rather than taken from wait4(): the kernel's figure for a child is the
    # largest of its whole process tree, which may be pg_restore's.
    local c=$1 t0 pid hwm=0 anon=0 k v _ rc=0
    t0=$(date +%s.%N)
    "$KEEPSAKE_BIN" --config "${CFG[$c]}" verify "${ID[$c]}" --level restore \
        >"$OUT_DIR/verify-$c.txt" 2>"$OUT_DIR/verify-$c.err.txt" &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        { while read -r k v _; do
              case $k in
                  VmHWM:) hwm=$v ;;
                  RssAnon:) [[ $v -gt $anon ]] && anon=$v ;;
              esac
          done <"/proc/$pid/status"; } 2>/dev/null || true
        sleep 0.05
    done
    wait "$pid" || rc=$?
    WALL[$c]=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
    [[ $rc -eq 0 ]] || { cat "$OUT_DIR/verify-$c.txt" "$OUT_DIR/verify-$c.err.txt" >&2; die "$c: verify --level restore exited $rc"; }
    HWM[$c]=$hwm
    ANON[$c]=$anon
    cat "$OUT_DIR/verify-$c.txt"
    printf '%s: %.1f s, peak VmHWM %.1f MiB, largest RssAnon %.1f MiB\n' "$c" "${WALL[$c]}" \
        "$(awk -v k="$hwm" 'BEGIN { print k / 1024 }')" "$(awk -v k="$anon" 'BEGIN { print k / 1024 }')"
}
log "a. one keepsake verify --level restore of each (output, peak memory from /proc every 50 ms)"
measure_verify hosted
measure_verify plain
grep -q 'stand-in roles' "$OUT_DIR/verify-hosted.txt" && STAND_INS=yes || STAND_INS=no
grep -q 'not covered: 6 event triggers' "$OUT_DIR/verify-hosted.txt" && NOT_COVERED=yes || NOT_COVERED=no
[[ $STAND_INS == yes && $NOT_COVERED == yes ]] ||
    echo "hosted.sh: warning: the hosted verification does not list stand-in roles and 'not covered: 6 event triggers'" >&2

# ---------------------------------------------------------------------------------------------
# b. Verify time, interleaved rounds (as backup.sh's restores).
# ---------------------------------------------------------------------------------------------
median() { jq -r --arg n "$2" '.results[] | select(.command == $n) | .median' "$1"; }
field() { jq -r --arg n "$2" --arg f "$3" '.results[] | select(.command == $n) | .[$f]' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
merge_rounds() { # OUT FILE...: one result per command, as one hyperfine invocation would give
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
CHECKPOINT="$(q "$PG_BIN/psql") -h 127.0.0.1 -p ${PORT[scratch]} -U postgres -d postgres -X -q -c CHECKPOINT"
NAME_H='keepsake verify --level restore (hosted)'
NAME_P='keepsake verify --level restore (plain)'
log "b. verify time: $RUNS interleaved rounds (hyperfine --runs 1, hosted and plain; $WARMUP warmup in the first)"
for round in $(seq "$RUNS"); do
    warm=0
    [[ $round -eq 1 ]] && warm=$WARMUP
    cmd_h="$KS --config $(q "${CFG[hosted]}") verify ${ID[hosted]} --level restore --json > $(q "$OUT_DIR/verify-hosted-round$round.json")"
    cmd_p="$KS --config $(q "${CFG[plain]}") verify ${ID[plain]} --level restore --json > $(q "$OUT_DIR/verify-plain-round$round.json")"
    # Alternate which goes first.
    if ((round % 2 == 1)); then order=(-n "$NAME_H" "$cmd_h" -n "$NAME_P" "$cmd_p")
    else order=(-n "$NAME_P" "$cmd_p" -n "$NAME_H" "$cmd_h"); fi
    hyperfine --shell bash --warmup "$warm" --runs 1 --prepare "$CHECKPOINT" \
        --export-json "$OUT_DIR/hyperfine-verify-round$round.json" "${order[@]}"
done
merge_rounds "$OUT_DIR/hyperfine-verify.json" "$OUT_DIR"/hyperfine-verify-round*.json
M_H=$(median "$OUT_DIR/hyperfine-verify.json" "$NAME_H")
M_P=$(median "$OUT_DIR/hyperfine-verify.json" "$NAME_P")
[[ -n $M_H && -n $M_P ]] || die "could not read medians from $OUT_DIR/hyperfine-verify.json"
R_V=$(ratio "$M_H" "$M_P")
restore_ms() { # cluster: restore_ms of every timed round
    local c=$1 r out=()
    for r in $(seq "$RUNS"); do out+=("$(jq -r '.[0].restore_ms' "$OUT_DIR/verify-$c-round$r.json")"); done
    echo "${out[*]}"
}
RMS_H=$(restore_ms hosted)
RMS_P=$(restore_ms plain)
printf 'medians: hosted %.3fs, plain %.3fs: hosted / plain %s (target <= 1.10)\n' "$M_H" "$M_P" "$R_V"

# ---------------------------------------------------------------------------------------------
# c. keepsake source check.
# ---------------------------------------------------------------------------------------------
log "c. keepsake source check (hyperfine --warmup 1 --runs 10)"
declare -A CHECK_RC=()
for c in hosted plain; do
    CHECK_RC[$c]=0
    "$KEEPSAKE_BIN" --config "${CFG[$c]}" source check >"$OUT_DIR/source-check-$c.txt" 2>&1 || CHECK_RC[$c]=$?
    "$KEEPSAKE_BIN" --config "${CFG[$c]}" source check --json >"$OUT_DIR/source-check-$c.json" 2>/dev/null || true
    echo "$c: source check exited ${CHECK_RC[$c]}"
done
cat "$OUT_DIR/source-check-hosted.txt"
IGNORE=()
[[ ${CHECK_RC[hosted]} -ne 0 || ${CHECK_RC[plain]} -ne 0 ]] && IGNORE=(--ignore-failure)
NAME_SC_H='keepsake source check (hosted)'
NAME_SC_P='keepsake source check (plain)'
hyperfine --shell bash --warmup 1 --runs 10 "${IGNORE[@]}" \
    --export-json "$OUT_DIR/hyperfine-source-check.json" \
    -n "$NAME_SC_H" "$KS --config $(q "${CFG[hosted]}") source check > /dev/null" \
    -n "$NAME_SC_P" "$KS --config $(q "${CFG[plain]}") source check > /dev/null"
M_SC_H=$(median "$OUT_DIR/hyperfine-source-check.json" "$NAME_SC_H")
M_SC_P=$(median "$OUT_DIR/hyperfine-source-check.json" "$NAME_SC_P")

# ---------------------------------------------------------------------------------------------
# Summary.
# ---------------------------------------------------------------------------------------------
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
kib_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
verdict() { awk -v v="$1" -v t="$2" -v s="${3:-le}" 'BEGIN { ok = (s == "lt" ? v < t : v <= t); print (ok ? "PASS" : "FAIL") }'; }
secs() { awk -v s="$1" 'BEGIN { printf "%.3f", s }'; }
BUILD=release
[[ $KEEPSAKE_BIN == */debug/* ]] && BUILD="debug (numbers are not meaningful)"
MEM=$(free -g | awk '/^Mem:/ { print $2 " GiB total, " $7 " GiB available" }')
CPU=$(lscpu | grep 'Model name' | head -1 | sed 's/^Model name:[[:space:]]*//')
rounds() { # command-name: its time in every round
    jq -r --arg n "$1" '.results[] | select(.command == $n) | .times | map(. * 1000 | round / 1000 | tostring) | join(", ")' "$OUT_DIR/hyperfine-verify.json"
}
{
    echo "# Hosted (Supabase) database: restore-level verify and source check"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), \`benches/hosted.sh $SCALE\` (RUNS=$RUNS, WARMUP=$WARMUP)"
    echo
    echo "| machine | |"
    echo "|---|---|"
    echo "| CPUs (nproc) | $(nproc) |"
    echo "| memory (free -g) | $MEM |"
    echo "| CPU | $CPU |"
    echo "| PostgreSQL | $PG_VERSION, three clusters on one machine (sources loaded with fsync=off, measured with fsync=on; autovacuum=off) |"
    echo "| keepsake | $("$KEEPSAKE_BIN" --version), $BUILD, binary built $BIN_BUILT; commit $COMMIT when the run started |"
    echo "| tools | $(hyperfine --version) |"
    echo "| data | scale $SCALE: bulk tables (schema $BULK_SCHEMA) $(mib "${TABLE_BYTES[plain]}") in plain, $(mib "${TABLE_BYTES[hosted]}") in hosted; ${COUNTS[plain]} |"
    echo "| databases | hosted $(mib "${DB_BYTES[hosted]}"), plain $(mib "${DB_BYTES[plain]}") |"
    echo "| full backups | hosted ${ID[hosted]}: $(mib "${LOGICAL[hosted]}") logical, $(mib "${STORED[hosted]}") stored; plain ${ID[plain]}: $(mib "${LOGICAL[plain]}") logical, $(mib "${STORED[plain]}") stored |"
    echo
    echo "## keepsake verify --level restore ($RUNS interleaved rounds of one run each, each after a CHECKPOINT of the scratch server)"
    echo
    echo "| source | median s | mean s | min s | max s | every round s | restore_ms every round | × plain | target |"
    echo "|---|---:|---:|---:|---:|---|---|---:|---|"
    echo "| plain | $(secs "$M_P") | $(secs "$(field "$OUT_DIR/hyperfine-verify.json" "$NAME_P" mean)") | $(secs "$(field "$OUT_DIR/hyperfine-verify.json" "$NAME_P" min)") | $(secs "$(field "$OUT_DIR/hyperfine-verify.json" "$NAME_P" max)") | $(rounds "$NAME_P") | $RMS_P | 1.000 | |"
    echo "| hosted | $(secs "$M_H") | $(secs "$(field "$OUT_DIR/hyperfine-verify.json" "$NAME_H" mean)") | $(secs "$(field "$OUT_DIR/hyperfine-verify.json" "$NAME_H" min)") | $(secs "$(field "$OUT_DIR/hyperfine-verify.json" "$NAME_H" max)") | $(rounds "$NAME_H") | $RMS_H | **$R_V** | ≤ 1.10: $(verdict "$R_V" 1.10) |"
    echo
    echo "## Peak memory of one verify --level restore (the keepsake process, /proc/PID/status every 50 ms)"
    echo
    echo "| source | wall s | VmHWM MiB | largest RssAnon MiB |"
    echo "|---|---:|---:|---:|"
    echo "| hosted | ${WALL[hosted]} | $(kib_mib "${HWM[hosted]}") | $(kib_mib "${ANON[hosted]}") |"
    echo "| plain | ${WALL[plain]} | $(kib_mib "${HWM[plain]}") | $(kib_mib "${ANON[plain]}") |"
    echo
    echo "Hosted verification output (verify-hosted.txt; stand-in roles listed: $STAND_INS, \"not covered: 6 event triggers\": $NOT_COVERED):"
    echo
    echo '```'
    cat "$OUT_DIR/verify-hosted.txt"
    echo '```'
    echo
    echo "## keepsake source check (hyperfine, 1 warmup, 10 runs)"
    echo
    echo "| source | exit code | median s | mean s | min s | max s | target |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    for c in hosted plain; do
        n="keepsake source check ($c)"
        tgt=""
        [[ $c == hosted ]] && tgt="< 2 s: $(verdict "$M_SC_H" 2 lt)"
        echo "| $c | ${CHECK_RC[$c]} | $(secs "$(median "$OUT_DIR/hyperfine-source-check.json" "$n")") | $(secs "$(field "$OUT_DIR/hyperfine-source-check.json" "$n" mean)") | $(secs "$(field "$OUT_DIR/hyperfine-source-check.json" "$n" min)") | $(secs "$(field "$OUT_DIR/hyperfine-source-check.json" "$n" max)") | $tgt |"
    done
    echo
    echo "Raw results: hyperfine-*.json, verify-*.txt, verify-*-round*.json, source-check-*.{txt,json}, backup-*.json in this directory."
} >"$OUT_DIR/summary.md"
jq -n \
    --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg scale "$SCALE" --argjson runs "$RUNS" --argjson warmup "$WARMUP" \
    --arg nproc "$(nproc)" --arg memory "$MEM" --arg cpu "$CPU" --arg pg "$PG_VERSION" \
    --arg keepsake "$("$KEEPSAKE_BIN" --version)" --arg commit "$COMMIT" --arg build "$BUILD" --arg built "$BIN_BUILT" \
    --arg id_h "${ID[hosted]}" --arg id_p "${ID[plain]}" \
    --argjson logical_h "${LOGICAL[hosted]}" --argjson logical_p "${LOGICAL[plain]}" \
    --argjson table_h "${TABLE_BYTES[hosted]}" --argjson table_p "${TABLE_BYTES[plain]}" \
    --argjson db_h "${DB_BYTES[hosted]}" --argjson db_p "${DB_BYTES[plain]}" --arg counts "${COUNTS[plain]}" \
    --argjson m_h "$M_H" --argjson m_p "$M_P" --argjson r_v "$R_V" \
    --slurpfile verify "$OUT_DIR/hyperfine-verify.json" \
    --arg rms_h "$RMS_H" --arg rms_p "$RMS_P" \
    --argjson hwm_h "${HWM[hosted]}" --argjson anon_h "${ANON[hosted]}" --argjson wall_h "${WALL[hosted]}" \
    --argjson hwm_p "${HWM[plain]}" --argjson anon_p "${ANON[plain]}" --argjson wall_p "${WALL[plain]}" \
    --arg stand_ins "$STAND_INS" --arg not_covered "$NOT_COVERED" \
    --argjson sc_h "$M_SC_H" --argjson sc_p "$M_SC_P" \
    --argjson sc_rc_h "${CHECK_RC[hosted]}" --argjson sc_rc_p "${CHECK_RC[plain]}" '
{date: $date, scale_gb: ($scale | tonumber), runs: $runs, warmup: $warmup,
 machine: {nproc: ($nproc | tonumber), memory: $memory, cpu: $cpu, postgresql: $pg},
 keepsake: {version: $keepsake, commit_at_start: $commit, build: $build, binary_built: $built},
 data: {bulk_rows: $counts, bulk_table_bytes: {hosted: $table_h, plain: $table_p},
        database_bytes: {hosted: $db_h, plain: $db_p},
        backups: {hosted: {id: $id_h, logical_bytes: $logical_h}, plain: {id: $id_p, logical_bytes: $logical_p}}},
 verify_restore: {median_s: {hosted: $m_h, plain: $m_p}, ratio_hosted_plain: $r_v, target_ratio: 1.10,
                  pass: ($r_v <= 1.10),
                  times_s: ($verify[0].results | map({(.command): .times}) | add),
                  restore_ms: {hosted: ($rms_h | split(" ") | map(tonumber)), plain: ($rms_p | split(" ") | map(tonumber))},
                  hosted_lists_stand_in_roles: ($stand_ins == "yes"),
                  hosted_not_covered_6_event_triggers: ($not_covered == "yes")},
 peak_memory_kib: {hosted: {vm_hwm: $hwm_h, rss_anon_max: $anon_h, wall_s: $wall_h},
                   plain: {vm_hwm: $hwm_p, rss_anon_max: $anon_p, wall_s: $wall_p}},
 source_check: {median_s: {hosted: $sc_h, plain: $sc_p}, exit_code: {hosted: $sc_rc_h, plain: $sc_rc_p},
                target_s: 2, pass: ($sc_h < 2)}}' >"$OUT_DIR/summary.json"
log "summary ($OUT_DIR/summary.md, summary.json)"
cat "$OUT_DIR/summary.md"
