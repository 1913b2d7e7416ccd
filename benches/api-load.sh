#!/usr/bin/env bash
# Control API under load: `GET /v1/status` and `GET /v1/backups` latency (p50, p99, max) with
# 1,000 backups in a folder repository and 50 concurrent clients, and the daemon's memory.
#
#     benches/api-load.sh [BACKUPS] [CLIENTS] [REQUESTS_PER_CLIENT]   (default 1000 50 200)
#
# Uses `keepsake demo --keep` for a throwaway PostgreSQL cluster, makes BACKUPS backups of a
# one-table database in it (about 0.15 s each), starts the daemon, runs the load client
# (benches/api_load.rs, one connection per request over the Unix socket), reports VmRSS and
# VmHWM of the daemon, then stops the daemon and the cluster and removes everything.
# Environment: KEEPSAKE_BIN (default <repo>/target/release/keepsake; never built here).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${KEEPSAKE_BIN:-$ROOT/target/release/keepsake}
N=${1:-1000}
CLIENTS=${2:-50}
REQS=${3:-200}
[[ -x $BIN ]] || { echo "api-load.sh: no keepsake binary at $BIN (cargo build --release)" >&2; exit 1; }
OUT=$(mktemp)
"$BIN" demo --keep >"$OUT" 2>&1 || { cat "$OUT"; exit 1; }
CFG=$(grep -o '/tmp/keepsake-pg-[^ ]*' "$OUT" | grep -m1 -o '^/tmp/keepsake-pg-[^/]*')/keepsake.toml
W=$(dirname "$CFG")
PID=""
cleanup() {
    [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    if id postgres >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")/pg_ctl" -D "$W/data" stop -m fast >/dev/null 2>&1 || true
    else
        pg_ctl -D "$W/data" stop -m fast >/dev/null 2>&1 || true
    fi
    rm -rf "$W" "$OUT"
}
trap cleanup EXIT
URL=$(grep -m1 '^url = "postgres' "$CFG" | sed -E 's/^url = "(.*)"/\1/')
export PGPASSWORD
PGPASSWORD=$(cat "$W/source-password")
psql -X -q -d "$URL" -c "CREATE DATABASE tiny" >/dev/null
TINY=$(sed -E 's#/wedsync#/tiny#' <<<"$URL")
psql -X -q -d "$TINY" -c "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g" >/dev/null
sed -i -E "s#^url = \"postgres[^\"]*\"#url = \"$TINY\"#; s#^name = \"wedsync\"#name = \"tiny\"#" "$CFG"
"$BIN" --config "$CFG" list --json >/dev/null
echo "making $N backups of a 1,000-row database…" >&2
t0=$(date +%s)
for i in $(seq "$N"); do
    "$BIN" --config "$CFG" backup --type incremental >/dev/null 2>&1 || { echo "backup $i failed" >&2; exit 1; }
done
echo "$N backups in $(( $(date +%s) - t0 )) s" >&2
"$BIN" --config "$CFG" daemon 2>"$W/daemon.log" &
PID=$!
SOCK=$W/state/keepsake.sock
for _ in $(seq 100); do [[ -S $SOCK ]] && break; sleep 0.1; done
t0=$(date +%s.%N)
curl -s --unix-socket "$SOCK" http://k/v1/backups -o /dev/null -w "first /v1/backups (cold view, $N manifests): %{time_total} s\n"
(cd "$ROOT" && cargo bench -q --bench api_load -- "$SOCK" "$CLIENTS" "$REQS")
grep -E 'VmRSS|VmHWM' "/proc/$PID/status"
