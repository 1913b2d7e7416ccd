#!/usr/bin/env bash
# The daemon's memory after heavy jobs (issue 28: an idle daemon back at ≤ 48 MiB).
#
#     benches/backup.sh --keep 1 && benches/daemon-after-jobs.sh [WORK_DIR]
#
# WORK_DIR (default bench-out/work) is what `benches/backup.sh --keep` leaves. Starts a
# throwaway PostgreSQL 15 cluster (as `postgres`, 127.0.0.1, a free port) as the scratch and
# target server, then `keepsake --daemon` on that repository (no schedule due), and through its
# control API (the Unix socket, as root) runs a restore-level verify of the newest full backup,
# then a restore of it into a new database. It reads the daemon's RssAnon and VmHWM from
# /proc/PID/status: idle before, the peak during each job (VmHWM is the kernel's high-water
# mark), and idle 10 s and 60 s after the last. Needs root (runuser) and curl. The binary:
# KEEPSAKE_BIN (default target/release/keepsake; never built here).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${1:-$ROOT/bench-out/work}
BIN=${KEEPSAKE_BIN:-$ROOT/target/release/keepsake}
PG=/usr/lib/postgresql/${PG_MAJOR:-15}/bin
[[ -x $BIN ]] || { echo "no $BIN: cargo build --release first" >&2; exit 2; }
[[ -f $W/hyperfine.toml ]] || { echo "no $W/hyperfine.toml: run benches/backup.sh --keep first" >&2; exit 2; }
T=$(mktemp -d /tmp/keepsake-daemon-mem.XXXX)
chown postgres "$T"
DAEMON=
. "$ROOT/benches/throwaway-pg.sh"
stop() {
    [[ -n $DAEMON ]] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
    pg_kill
    rm -rf "$T"
}
trap stop EXIT
pg_init
pg_start
sed -e "s#url = \"postgres://[^\"]*\"#url = \"postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable\"#" \
    -e "s#password = \"file:[^\"]*\"#password = \"file:$T/pw\"#" "$W/hyperfine.toml" > "$T/keepsake.toml"
printf '\n[verification]\nscratch_url = "postgres://postgres@127.0.0.1:%s/postgres?sslmode=disable"\nscratch_password = "file:%s"\n\n[daemon]\nstate_dir = "%s/state"\n\n[api]\nsocket = "%s/k.sock"\n' \
    "$PORT" "$T/pw" "$T" "$T" >> "$T/keepsake.toml"
ID=$("$BIN" --config "$T/keepsake.toml" list --json |
    python3 -c 'import json, sys; print([b for b in json.load(sys.stdin) if b["type"] == "full"][-1]["id"])')
"$BIN" --config "$T/keepsake.toml" --daemon 2> "$T/daemon.log" &
DAEMON=$!
for _ in $(seq 1 100); do [[ -S $T/k.sock ]] && break; sleep 0.1; done
api() { curl -s --unix-socket "$T/k.sock" -H 'content-type: application/json' "$@"; }
mib() { awk -v k="$1:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$DAEMON/status"; }
run() {
    local job
    job=$(api -X POST "http://localhost$1" -d "$2" | python3 -c 'import json, sys; print(json.load(sys.stdin)["job"])')
    while :; do
        st=$(api "http://localhost/v1/jobs/$job" | python3 -c 'import json, sys; j = json.load(sys.stdin); print("running" if j["live"] else (j["record"] or {}).get("status", "running"))')
        [[ $st == running ]] || break
        sleep 0.5
    done
    echo "$st"
}
sleep 3
echo "keepsake daemon on backup $ID ($("$BIN" --version)), GLIBC_TUNABLES=$(tr '\0' '\n' < /proc/$DAEMON/environ | sed -n 's/^GLIBC_TUNABLES=//p')"
echo "idle before:         RssAnon $(mib RssAnon) MiB, VmHWM $(mib VmHWM) MiB"
st=$(run "/v1/backups/$ID/verify" '{"level": "restore"}')
echo "verify restore ($st): RssAnon $(mib RssAnon) MiB, VmHWM $(mib VmHWM) MiB"
st=$(run "/v1/backups/$ID/restore" '{"target_source": "bench", "target_database": "mem_daemon", "create": true}')
echo "restore ($st):        RssAnon $(mib RssAnon) MiB, VmHWM $(mib VmHWM) MiB"
sleep 10
echo "idle 10 s after:     RssAnon $(mib RssAnon) MiB"
sleep 50
echo "idle 60 s after:     RssAnon $(mib RssAnon) MiB, VmRSS $(mib VmRSS) MiB"
if [[ -n ${SMAPS:-} ]]; then
    echo "largest anonymous regions (kB):"
    awk '/^[0-9a-f]+-[0-9a-f]+ / { r = $1 " " $6 } /^Anonymous:/ { if ($2 > 1024) print $2, r }' "/proc/$DAEMON/smaps" | sort -rn | head -12
fi
