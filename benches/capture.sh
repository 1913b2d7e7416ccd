#!/usr/bin/env bash
# Continuous change capture under pgbench (issue 29; BENCHMARKS.md): the recovery point it
# gives (capture lag), its CPU, the bytes it stores against the WAL the server wrote, the
# daemon's memory, and a point-in-time restore of the run against the dump restore alone.
#
#     benches/capture.sh [SECONDS] [CLIENTS] [SEGMENT]      (default 60, 4, 2s)
#
# Starts a throwaway PostgreSQL 15 cluster (as `postgres`, 127.0.0.1, a free port,
# wal_level = logical), `pgbench -i -s 10` (pgbench_history given a primary key, so that every
# table is captured), a folder repository, a full backup, then `keepsake --daemon` capturing
# with `segment = SEGMENT`, and runs `pgbench -c CLIENTS -j 2 -T SECONDS -n` at full rate.
# Every second it reads `status --json` (`last_commit_age_s`: how old the newest stored commit
# is, under constant load the recovery point). Then the daemon's CPU (utime + stime from
# /proc/PID/stat) and VmHWM, the capture objects' bytes and the WAL written
# (pg_current_wal_lsn before and after), and a `restore --at` the last captured commit against
# `restore ID` of the dump, each into a new database; the point-in-time one must hold exactly
# the source's balances. Needs root (runuser). The binary: KEEPSAKE_BIN (default
# target/release/keepsake; never built here).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECS=${1:-60}
CLIENTS=${2:-4}
SEGMENT=${3:-2s}
BIN=${KEEPSAKE_BIN:-$ROOT/target/release/keepsake}
PG=/usr/lib/postgresql/${PG_MAJOR:-15}/bin
[[ -x $BIN ]] || { echo "no $BIN: cargo build --release first" >&2; exit 2; }
T=$(mktemp -d /tmp/keepsake-capture-bench.XXXX)
chown postgres "$T"
DAEMON=
stop() {
    [[ -n $DAEMON ]] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
    runuser -u postgres -- "$PG/pg_ctl" -D "$T/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap stop EXIT
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
head -c 24 /dev/urandom | base64 > "$T/pw"
chown postgres "$T/pw"
runuser -u postgres -- "$PG/initdb" -D "$T/data" -U postgres --pwfile="$T/pw" -A scram-sha-256 >/dev/null
runuser -u postgres -- "$PG/pg_ctl" -D "$T/data" -w -o "-p $PORT -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories=$T -c wal_level=logical -c max_wal_senders=4 \
    -c max_replication_slots=4 -c max_wal_size=4GB" start >/dev/null
export PGPASSWORD=$(cat "$T/pw") PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
psql() { "$PG/psql" -X -q -t -A "$@"; }
psql -d postgres -c "CREATE DATABASE bench"
"$PG/pgbench" -i -q -s 10 bench 2>/dev/null
psql -d bench -c "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY"

RCP=$("$BIN" keygen --output "$T/identity.txt" | tail -1)
cat > "$T/keepsake.toml" <<EOF
[repository]
url = "file://$T/repo"

[encryption]
recipients = ["$RCP"]
identity_file = "$T/identity.txt"

[[sources]]
name = "bench"
url = "postgres://postgres@127.0.0.1:$PORT/bench?sslmode=disable"
password = "file:$T/pw"

[sources.capture]
segment = "$SEGMENT"

[daemon]
state_dir = "$T/state"
EOF
K() { "$BIN" --config "$T/keepsake.toml" "$@"; }
K init >/dev/null
env -u PGPASSWORD "$BIN" --config "$T/keepsake.toml" --daemon > "$T/daemon.log" 2>&1 &
DAEMON=$!
for _ in $(seq 1 300); do
    [[ -n $(psql -d bench -c "SELECT 1 FROM pg_replication_slots") ]] && break
    sleep 0.1
done
K backup --type full >/dev/null 2>&1
DUMP=$(K list --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[-1]["id"])')
ticks() { awk '{ print $14 + $15 }' "/proc/$DAEMON/stat"; }
HZ=$(getconf CLK_TCK)
WAL0=$(psql -d bench -c "SELECT pg_current_wal_lsn()")
CPU0=$(ticks)
echo "capture under pgbench: $SECS s, $CLIENTS clients, segment $SEGMENT ($("$BIN" --version))"
"$PG/pgbench" -c "$CLIENTS" -j 2 -T "$SECS" -n bench > "$T/pgbench.out" 2>&1 &
PGB=$!
: > "$T/lag"
sleep 5
while kill -0 "$PGB" 2>/dev/null; do
    K status --json 2>/dev/null | python3 -c '
import json, sys
c = json.load(sys.stdin)[0].get("capture") or {}
a = c.get("last_commit_age_s")
print(a if a is not None else "")' >> "$T/lag" || true
    sleep 1
done
wait "$PGB"
CPU1=$(ticks)
WAL1=$(psql -d bench -c "SELECT pg_current_wal_lsn()")
TPS=$(awk '/^tps/ { print $3; exit }' "$T/pgbench.out")
TX=$(awk '/number of transactions actually processed/ { print $NF; exit }' "$T/pgbench.out" | cut -d/ -f1)
# Until the last transaction is stored (sealed within one segment period).
sleep $(( ${SEGMENT%s} * 2 ))
sleep 3
LAST=$(K status --json 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["capture"]["last_commit_at"])')
HWM=$(awk '/^VmHWM/ { print $2 }' "/proc/$DAEMON/status")
CAP=$(du -sb "$T/repo/capture" | cut -f1)
WALB=$(psql -d bench -c "SELECT pg_wal_lsn_diff('$WAL1', '$WAL0')::bigint")
SEGS=$(find "$T/repo/capture/bench" -maxdepth 1 -type f | wc -l)
python3 - "$T/lag" <<PY
import sys
v = sorted(int(x) for x in open(sys.argv[1]).read().split() if x.strip())
q = lambda p: v[min(len(v) - 1, int(round(p * (len(v) - 1))))] if v else None
print(f"pgbench: {float('$TPS'):.0f} tps, {int('$TX')} transactions")
print(f"capture lag (status last_commit_age_s, 1 sample/s, {len(v)} samples): p50 {q(0.5)} s, p99 {q(0.99)} s, max {v[-1] if v else None} s")
cpu = ($CPU1 - $CPU0) / $HZ
print(f"daemon CPU: {cpu:.2f} s in {$SECS} s = {cpu / $SECS * 100:.1f} % of a core; per 1,000 tps: {cpu / $SECS / (float('$TPS') / 1000) * 100:.1f} % of a core")
print(f"stored: {$CAP / 1048576:.1f} MiB in $SEGS segments for {$WALB / 1048576:.1f} MiB of WAL ({$CAP / max($WALB, 1):.3f}x); {$CAP / 1048576 * 3600 / $SECS:.0f} MiB per hour at this rate")
print(f"daemon VmHWM: {$HWM / 1024:.1f} MiB")
PY
# Point in time against the dump alone.
t0=$(date +%s.%N)
K restore --at "$LAST" --source bench --target "postgres://postgres@127.0.0.1:$PORT/at_end?sslmode=disable" \
    --target-password "file:$T/pw" --create > "$T/at.out" 2>&1 || { cat "$T/at.out"; exit 1; }
t1=$(date +%s.%N)
K restore "$DUMP" --target "postgres://postgres@127.0.0.1:$PORT/dump_only?sslmode=disable" \
    --target-password "file:$T/pw" --create > "$T/dump.out" 2>&1 || { cat "$T/dump.out"; exit 1; }
t2=$(date +%s.%N)
SRC=$(psql -d bench -c "SELECT sum(abalance), count(*) FROM pgbench_accounts")
GOT=$(psql -d at_end -c "SELECT sum(abalance), count(*) FROM pgbench_accounts")
HIST=$(psql -d bench -c "SELECT count(*) FROM pgbench_history")
GOTH=$(psql -d at_end -c "SELECT count(*) FROM pgbench_history")
python3 -c "print(f'restore --at the last commit: {$t1 - $t0:.1f} s; restore of the dump alone: {$t2 - $t1:.1f} s ({($t1 - $t0) / ($t2 - $t1):.2f}x)')"
echo "$(grep -o '[0-9]* captured transaction(s)' "$T/at.out" || true) applied"
if [[ $SRC == "$GOT" && $HIST == "$GOTH" ]]; then
    echo "the point-in-time restore holds exactly the source's state: balances $SRC, history $HIST rows"
else
    echo "MISMATCH: source balances $SRC history $HIST; restored $GOT history $GOTH" >&2
    exit 1
fi
