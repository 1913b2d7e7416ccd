#!/usr/bin/env bash
# A/B of two keepsake binaries on one database: full backup and `restore --create`, in
# alternating rounds (the order flips every round), a CHECKPOINT before each run. Answers
# "did this change make keepsake slower?" on a noisy machine better than two benchmark runs.
#
#     OLD=/path/to/old/keepsake NEW=target/release/keepsake \
#     DB_URL='postgres://postgres@127.0.0.1:5432/wedbench?sslmode=disable' benches/ab.sh [ROUNDS]
#
# DB_URL's user must be allowed to CHECKPOINT and to create and drop the databases ab_old and
# ab_new on that server (password, if any, from PGPASSWORD or ~/.pgpass). Repositories,
# keys and configurations live in a temporary directory, removed at the end. Prints every
# time and the new ÷ old ratio of the medians. Build the old binary from a worktree, e.g.
# `git worktree add /tmp/old <commit> && CARGO_TARGET_DIR=/tmp/old-target cargo build --release`
# (run from /tmp/old).
set -euo pipefail
ROUNDS=${1:-5}
: "${OLD:?set OLD to the old keepsake binary}" "${NEW:?set NEW to the new keepsake binary}"
: "${DB_URL:?set DB_URL to the database to back up}"
ADMIN_URL=$(sed -E 's#/[^/?]+(\?|$)#/postgres\1#' <<<"$DB_URL")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
sql() { psql -X -q -d "$ADMIN_URL" -c "$1" >/dev/null; }
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; e=$(date +%s.%N); echo "$e - $s" | bc; }
for n in old new; do
    bin=$([[ $n == old ]] && echo "$OLD" || echo "$NEW")
    rcp=$("$bin" keygen --output "$WORK/$n-id.txt" 2>/dev/null)
    cat >"$WORK/$n.toml" <<TOML
[repository]
url = "file://$WORK/repo-$n"
[encryption]
recipients = ["$rcp"]
identity_file = "$WORK/$n-id.txt"
[[sources]]
name = "ab"
url = "$DB_URL"
[daemon]
state_dir = "$WORK/state-$n"
TOML
done
for r in $(seq "$ROUNDS"); do
    order="old new"; [[ $((r % 2)) -eq 0 ]] && order="new old"
    for n in $order; do
        bin=$([[ $n == old ]] && echo "$OLD" || echo "$NEW")
        rm -rf "$WORK/repo-$n"
        "$bin" --config "$WORK/$n.toml" init >/dev/null
        sql CHECKPOINT
        echo "backup $n $(secs "$bin" --config "$WORK/$n.toml" backup --type full)"
        id=$("$bin" --config "$WORK/$n.toml" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
        sql "DROP DATABASE IF EXISTS ab_$n"
        sql CHECKPOINT
        target=$(sed -E "s#/[^/?]+(\?|$)#/ab_$n\1#" <<<"$DB_URL")
        echo "restore $n $(secs "$bin" --config "$WORK/$n.toml" restore "$id" --target "$target" --create)"
    done
done | tee "$WORK/times.txt"
python3 - "$WORK/times.txt" <<'PY'
import statistics as st, sys
d = {}
for line in open(sys.argv[1]):
    op, n, t = line.split()
    d.setdefault((op, n), []).append(float(t))
for op in ("backup", "restore"):
    o, n = st.median(d[(op, "old")]), st.median(d[(op, "new")])
    print(f"{op}: new {n:.3f} s, old {o:.3f} s (medians): new / old = {n / o:.3f}")
PY
sql "DROP DATABASE IF EXISTS ab_old"; sql "DROP DATABASE IF EXISTS ab_new"
