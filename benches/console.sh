#!/usr/bin/env bash
# The console's measurements (issue 15; BENCHMARKS.md): time from start to a drawn Overview with
# BACKUPS backups in an S3 repository (Garage on loopback) — cold, with an empty state-directory
# cache, and warm — the console's peak RSS, and the bytes it sends to the terminal per second
# during a running backup (tmux pipe-pane counts them).
#
#     benches/console.sh [BACKUPS]        (default 1000)
#
# Runs the ignored test tests/integration/bench_console.rs in a release build (tests/setup.sh
# first: it needs PostgreSQL, Garage and tmux).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tests/setup.sh >/dev/null
KEEPSAKE_BENCH_BACKUPS="${1:-1000}" cargo test --release --test integration -- \
    --ignored bench_console_startup_and_terminal_bytes --nocapture 2>&1 | grep -E '^console|panicked|FAILED'
