#!/usr/bin/env bash
# Peak memory of `keepsake restore --create`, read from /proc/PID/status while it runs.
#
#     benches/backup.sh --keep 1 && benches/restore-memory.sh [WORK_DIR]
#
# WORK_DIR (default bench-out/work) is what `benches/backup.sh --keep` leaves: its
# repository (repo-hyperfine), key and configuration. Starts a throwaway PostgreSQL 15 cluster
# (as `postgres`, 127.0.0.1, a free port), restores the newest full backup into a new database
# twice — the default (parallel, one session per CPU, at least 2) and `--jobs 1` (one stream
# into pg_restore) — sampling VmHWM and RssAnon of the keepsake process every 50 ms (VmHWM is
# the kernel's own high-water mark, so a peak between samples is not missed), then the same
# for `verify --level restore` (scratch database on the same cluster), prints them with each
# run's time, then removes the cluster. Needs root (runuser). The binary:
# KEEPSAKE_BIN (default target/release/keepsake; never built here).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${1:-$ROOT/bench-out/work}
BIN=${KEEPSAKE_BIN:-$ROOT/target/release/keepsake}
PG=/usr/lib/postgresql/${PG_MAJOR:-15}/bin
[[ -x $BIN ]] || { echo "no $BIN: cargo build --release first" >&2; exit 2; }
[[ -f $W/hyperfine.toml ]] || { echo "no $W/hyperfine.toml: run benches/backup.sh --keep first" >&2; exit 2; }
T=$(mktemp -d /tmp/keepsake-restore-mem.XXXX)
chown postgres "$T"
stop() { runuser -u postgres -- "$PG/pg_ctl" -D "$T/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$T"; }
trap stop EXIT
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
head -c 24 /dev/urandom | base64 > "$T/pw"
chown postgres "$T/pw"
runuser -u postgres -- "$PG/initdb" -D "$T/data" -U postgres --pwfile="$T/pw" -A scram-sha-256 >/dev/null
runuser -u postgres -- "$PG/pg_ctl" -D "$T/data" -w \
    -o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$T" start >/dev/null
sed -e "s#url = \"postgres://[^\"]*\"#url = \"postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable\"#" \
    -e "s#password = \"file:[^\"]*\"#password = \"file:$T/pw\"#" "$W/hyperfine.toml" > "$T/keepsake.toml"
printf '\n[verification]\nscratch_url = "postgres://postgres@127.0.0.1:%s/postgres?sslmode=disable"\nscratch_password = "file:%s"\n' \
    "$PORT" "$T/pw" >> "$T/keepsake.toml"
ID=$("$BIN" --config "$T/keepsake.toml" list --json |
    python3 -c 'import json, sys; print([b for b in json.load(sys.stdin) if b["type"] == "full"][-1]["id"])')
echo "keepsake restore --create of backup $ID ($("$BIN" --version))"
for mode in default jobs1 verify; do
    args=(restore "$ID" --target "postgres://postgres@127.0.0.1:$PORT/mem_$mode?sslmode=disable"
        --target-password "file:$T/pw" --create)
    [[ $mode == jobs1 ]] && args+=(--jobs 1)
    [[ $mode == verify ]] && args=(verify "$ID" --level restore)
    start=$(date +%s.%N)
    "$BIN" --config "$T/keepsake.toml" "${args[@]}" > "$T/out" 2>&1 &
    pid=$! hwm=0 anon=0
    while kill -0 "$pid" 2>/dev/null; do
        if s=$(cat "/proc/$pid/status" 2>/dev/null); then
            h=$(awk '/^VmHWM/ { print $2 }' <<<"$s")
            a=$(awk '/^RssAnon/ { print $2 }' <<<"$s")
            [[ -n $h ]] && hwm=$h
            [[ -n $a && $a -gt $anon ]] && anon=$a
        fi
        sleep 0.05
    done
    rc=0
    wait "$pid" || rc=$?
    took=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
    [[ $rc -eq 0 ]] || { cat "$T/out" >&2; exit 1; }
    printf '%-8s VmHWM %4d MiB   max RssAnon %4d MiB   %ss\n' "$mode" $((hwm / 1024)) $((anon / 1024)) "$took"
done
