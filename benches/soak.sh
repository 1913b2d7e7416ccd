#!/usr/bin/env bash
# Daemon memory under a soak (issue 28): does anything accumulate?
#
#     benches/soak.sh [SECONDS] [OUT]        (default 300 s; OUT: a CSV of the samples)
#
# Starts a throwaway PostgreSQL 15 cluster (as `postgres`, 127.0.0.1, a free port) with a small
# database, a folder repository, and `keepsake --daemon` with one source backed up every 2 s
# (`*/2 * * * * *`), a structure-level verify after each backup, `keep_last = 5` (a prune
# after every backup), an `rpo`, and a webhook to a listener that accepts and never answers.
# The database is stopped for 30 s and started for 30 s in turn, so half the backups fail.
# Every 5 s it reads RssAnon and VmRSS of the daemon from /proc/PID/status; at the end it
# prints the first and last minute's median RssAnon, the slope over the second half (least
# squares, MiB per minute), VmHWM, and the jobs run. A daemon that holds nothing over has a
# slope near 0 once its pools have warmed up.
# Variants, to find what accumulates: SOAK_HOOK=0 (no webhook), SOAK_FLAP=0 (the database
# stays up), SOAK_VERIFY=none (no verify after backup), SOAK_RETENTION=0 (no prune).
# Needs root (runuser). The binary: KEEPSAKE_BIN (default target/release/keepsake; never
# built here).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECS=${1:-300}
OUT=${2:-}
BIN=${KEEPSAKE_BIN:-$ROOT/target/release/keepsake}
PG=/usr/lib/postgresql/${PG_MAJOR:-15}/bin
[[ -x $BIN ]] || { echo "no $BIN: cargo build --release first" >&2; exit 2; }
T=$(mktemp -d /tmp/keepsake-soak.XXXX)
chown postgres "$T"
DAEMON=
HOOK=
. "$ROOT/benches/throwaway-pg.sh"
stop() {
    [[ -n $DAEMON ]] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
    [[ -n $HOOK ]] && kill "$HOOK" 2>/dev/null || true
    pg_kill
    rm -rf "$T"
}
trap stop EXIT
pg_init
HOOK_PORT=$(free_port)
pg_start
export PGPASSWORD=$(cat "$T/pw") PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
"$PG/psql" -X -q -d postgres -c "CREATE DATABASE soak"
"$PG/psql" -X -q -d soak -c "CREATE TABLE guests (id serial PRIMARY KEY, name text, note text);
    INSERT INTO guests (name, note) SELECT 'guest ' || g, repeat(md5(g::text), 4)
    FROM generate_series(1, 20000) g"

# A webhook receiver that accepts every connection and never answers.
python3 - "$HOOK_PORT" <<'PY' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(512)
held = []
while True:
    c, _ = s.accept(); held.append(c)
    if len(held) > 400: held.pop(0).close()
PY
HOOK=$!

RCP=$("$BIN" keygen --output "$T/identity.txt" | tail -1)
cat > "$T/keepsake.toml" <<EOF
[repository]
url = "file://$T/repo"

[encryption]
recipients = ["$RCP"]
identity_file = "$T/identity.txt"

[[sources]]
name = "soak"
url = "postgres://postgres@127.0.0.1:$PORT/soak?sslmode=disable&connect_timeout=2"
password = "file:$T/pw"
rpo = "1m"

[sources.schedule]
incremental = "*/2 * * * * *"

$( ((${SOAK_RETENTION:-1})) && printf '[retention]\nkeep_last = 5\nprune_grace_hours = 0\nallow_short_prune_grace = true\n' )

[verification]
after_backup = "${SOAK_VERIFY:-structure}"

$( ((${SOAK_HOOK:-1})) && printf '[notifications]\nwebhooks = [{ url = "http://127.0.0.1:%s/hook", events = ["backup_failed", "backup_succeeded", "rpo_breach", "rpo_recovered", "prune", "verify_failed"] }]\n' "$HOOK_PORT" )

[daemon]
state_dir = "$T/state"
EOF
K() { "$BIN" --config "$T/keepsake.toml" "$@"; }
K init >/dev/null
# The daemon reads its password from its own file, never from psql's PGPASSWORD.
env -u PGPASSWORD "$BIN" --config "$T/keepsake.toml" --daemon > "$T/daemon.log" 2>&1 &
DAEMON=$!
field() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$DAEMON/status"; }
: > "$T/samples.csv"
start=$(date +%s)
next_flip=$((start + 30))
up=1
while :; do
    now=$(date +%s)
    el=$((now - start))
    ((el >= SECS)) && break
    if ((${SOAK_FLAP:-1} && now >= next_flip)); then
        if ((up)); then pg_stop; up=0; else pg_start; up=1; fi
        next_flip=$((now + 30))
    fi
    echo "$el,$(field RssAnon),$(field VmRSS)" >> "$T/samples.csv"
    sleep 5
done
hwm=$(field VmHWM)
((up)) || pg_start
[[ -n $OUT ]] && cp "$T/samples.csv" "$OUT"
jobs=$(K list --json 2>/dev/null | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' || echo "?")
python3 - "$T/samples.csv" "$SECS" "$hwm" "$jobs" <<'PY'
import statistics, sys
rows = [tuple(int(x) for x in l.split(",")) for l in open(sys.argv[1]) if l.strip()]
secs, hwm, kept = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
mib = lambda kb: kb / 1024
first = [r[1] for r in rows if r[0] < 60]
last = [r[1] for r in rows if r[0] >= secs - 60]
half = [r for r in rows if r[0] >= secs / 2]
xs = [r[0] / 60 for r in half]; ys = [mib(r[1]) for r in half]
mx, my = statistics.mean(xs), statistics.mean(ys)
slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(1e-9, sum((x - mx) ** 2 for x in xs))
print(f"soak {secs}s, {len(rows)} samples: RssAnon first minute {mib(statistics.median(first)):.1f} MiB, "
      f"last minute {mib(statistics.median(last)):.1f} MiB, slope over the second half {slope:+.2f} MiB/min, "
      f"VmHWM {mib(hwm):.1f} MiB; backups kept at the end: {kept}")
PY
echo "daemon log lines: $(wc -l < "$T/daemon.log"); jobs finished: $(grep -c 'job finished\|finished' "$T/daemon.log" || true)"
