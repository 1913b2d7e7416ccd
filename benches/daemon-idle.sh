#!/usr/bin/env bash
# Idle cost of `keepsake daemon`: CPU time and memory over a minute with nothing due.
#
#     benches/daemon-idle.sh [SECONDS]        (default 60)
#
# Sets up a throwaway key, folder repository and one source whose schedule is not due during
# the run (with an rpo, so the RPO check runs every 2 s as in production), starts the daemon,
# waits, and reports utime+stime (from /proc/PID/stat) and VmRSS / VmHWM (from /proc/PID/status).
# No PostgreSQL is needed: an idle daemon does not connect to its sources.
# Environment: KEEPSAKE_BIN (default <repo>/target/release/keepsake; never built here).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${KEEPSAKE_BIN:-$ROOT/target/release/keepsake}
SECS=${1:-60}
[[ -x $BIN ]] || { echo "daemon-idle.sh: no keepsake binary at $BIN (cargo build --release)" >&2; exit 1; }
W=$(mktemp -d)
PID=""
cleanup() { [[ -n $PID ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
"$BIN" keygen --output "$W/id.txt" >"$W/recipient"
cat >"$W/k.toml" <<TOML
[repository]
url = "file://$W/repo"
[encryption]
recipients = ["$(cat "$W/recipient")"]
identity_file = "$W/id.txt"
[[sources]]
name = "idle"
url = "postgres://backup@127.0.0.1:1/idle"
rpo = "26h"
[sources.schedule]
full = "0 3 1 1 *"
[daemon]
state_dir = "$W/state"
TOML
"$BIN" --config "$W/k.toml" init >/dev/null
"$BIN" --config "$W/k.toml" daemon 2>"$W/log" &
PID=$!
sleep 2
ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
t0=$(ticks)
sleep "$SECS"
t1=$(ticks)
rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$PID/status")
hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$PID/status")
cpu_s=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }')
pct=$(awk -v c="$cpu_s" -v s="$SECS" 'BEGIN { printf "%.3f", c / s * 100 }')
echo "keepsake daemon idle for ${SECS}s: CPU ${cpu_s}s (${pct}% of one core), RSS $((rss / 1024)) MiB (peak $((hwm / 1024)) MiB)"
