#!/usr/bin/env bash
# The crash harness's long mode (issue 13): the same three scenarios as CI
# (tests/integration/crash.rs) with many more rounds — SIGKILL at random points of backups,
# prunes, restores and verifications side by side on a folder and an S3 repository, and two
# daemons sharing one S3 repository while one prunes. After every round: every backup verifies
# at data level, and a prune and a backup succeed.
#
#   tests/crash-long.sh [ROUNDS] [SEED]     default 2000 rounds per scenario (several hours)
#
# A failure prints the round and KEEPSAKE_CRASH_SEED to replay it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tests/setup.sh
export KEEPSAKE_CRASH_ROUNDS="${1:-2000}"
[ -n "${2:-}" ] && export KEEPSAKE_CRASH_SEED="$2"
exec cargo test --release --test integration -- crash:: --nocapture --test-threads 1
