#!/usr/bin/env bash
# Install what keepsake's tests and `keepsake demo` need on a fresh Debian/Ubuntu machine:
#   - PostgreSQL server binaries (initdb, pg_ctl, postgres) and client tools (pg_dump,
#     pg_restore, psql), from the `postgresql` package
#   - age   (the tests decrypt chunks with the age CLI to prove interoperability)
#   - zstd  (the same, for decompressing chunks)
#   - Garage (the S3 tests run against a real single-node Garage server on loopback; no
#     Debian package, so it comes from crates.io with `cargo install`, see install_garage)
#
# Idempotent: installs only what is missing and runs `apt-get update` only when a Debian
# package has to be installed. It starts no service and creates no cluster itself; the tests
# start their own throwaway clusters and Garage servers. (Debian's postgresql package may
# create and start a cluster "main" on install; the tests do not use it.)
#
# With --demo, only what `keepsake demo` needs: the PostgreSQL server binaries (and client
# tools). No Garage build, no test-only tools: the demo is up in about a minute.
#
# Run as root, or as a user who can sudo.
set -euo pipefail

demo=0
case "${1:-}" in
    --demo) demo=1 ;;
    "") ;;
    *) printf 'usage: tests/setup.sh [--demo]\n' >&2; exit 2 ;;
esac

log() { printf 'setup: %s\n' "$*"; }

have_pg_server() {
    local f
    for f in /usr/lib/postgresql/*/bin/initdb; do
        [ -x "$f" ] && return 0
    done
    return 1
}

missing=()
if have_pg_server; then
    log "PostgreSQL server binaries present: $(echo /usr/lib/postgresql/*/bin)"
else
    missing+=(postgresql)
fi
if [ "$demo" -eq 1 ]; then
    :
elif command -v age >/dev/null 2>&1; then
    log "age present: $(command -v age)"
else
    missing+=(age)
fi
if [ "$demo" -eq 1 ]; then
    :
elif command -v zstd >/dev/null 2>&1; then
    log "zstd present: $(command -v zstd)"
else
    missing+=(zstd)
fi
# openssl (CLI only): the TLS test makes its certificates with it. keepsake itself uses rustls.
if [ "$demo" -eq 1 ]; then
    :
elif command -v openssl >/dev/null 2>&1; then
    log "openssl present: $(command -v openssl)"
else
    missing+=(openssl)
fi
# tmux drives the console end to end; curl calls the control API as other users; pgbouncer is
# the real connection pooler the hosted-database tests put in front of a cluster.
for tool in tmux curl pgbouncer; do
    [ "$demo" -eq 1 ] && break
    if command -v "$tool" >/dev/null 2>&1; then
        log "$tool present: $(command -v "$tool")"
    else
        missing+=("$tool")
    fi
done

# Garage, pinned so every machine and CI run tests against the same server. Built from source
# (about 10 minutes on a fresh machine); the binary then stays cached in ~/.cargo/bin (or
# $CARGO_HOME/bin), so later runs skip this. The tests look for it the same way: $KEEPSAKE_GARAGE,
# else `garage` on PATH, else ~/.cargo/bin/garage (tests/integration/support/garage.rs).
GARAGE_VERSION=2.5.0

find_garage() {
    local c
    for c in "${KEEPSAKE_GARAGE:-}" "$(command -v garage 2>/dev/null || true)" \
        "${CARGO_HOME:-$HOME/.cargo}/bin/garage"; do
        # Counts only if it runs: a stale or broken binary is as good as none.
        if [ -n "$c" ] && [ -x "$c" ] && "$c" --version >/dev/null 2>&1; then
            printf '%s\n' "$c"
            return 0
        fi
    done
    return 1
}

install_garage() {
    local g
    if g=$(find_garage); then
        log "garage present: $g ($("$g" --version 2>&1 | head -n 1))"
        return 0
    fi
    # rustup's cargo may be installed but not on PATH (a non-login shell, sudo).
    local cargo
    cargo=$(command -v cargo 2>/dev/null || printf '%s' "${CARGO_HOME:-$HOME/.cargo}/bin/cargo")
    if [ ! -x "$cargo" ]; then
        log "garage missing and no cargo to build it: install Rust (rustup.rs), then rerun" >&2
        return 1
    fi
    # --locked: build with Garage's own Cargo.lock, as its authors tested it.
    log "installing garage $GARAGE_VERSION with cargo install (about 10 minutes)"
    "$cargo" install garage --locked --version "$GARAGE_VERSION"
    if ! g=$(find_garage); then
        log "still no working garage after cargo install (see its output above)" >&2
        return 1
    fi
    log "installed: garage $g ($("$g" --version 2>&1 | head -n 1))"
}

install_packages() {
    if [ "${#missing[@]}" -eq 0 ]; then
        log "no Debian package to install"
        return 0
    fi

    local SUDO
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        log "missing packages: ${missing[*]}; run this script as root (or install sudo)" >&2
        return 1
    fi

    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing packages: ${missing[*]}; this script knows only apt-get (Debian/Ubuntu): install them by hand" >&2
        return 1
    fi

    log "installing: ${missing[*]}"
    ${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -q
    ${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"

    # Check the result rather than trusting the exit code alone.
    local failed=0 c
    if ! have_pg_server; then
        log "still no /usr/lib/postgresql/*/bin/initdb after installing postgresql" >&2
        failed=1
    fi
    local wanted=(age zstd openssl)
    [ "$demo" -eq 1 ] && wanted=()
    for c in ${wanted[@]+"${wanted[@]}"}; do
        if ! command -v "$c" >/dev/null 2>&1; then
            log "still no '$c' command after installing" >&2
            failed=1
        fi
    done
    [ "$failed" -eq 0 ] || return 1
    log "installed: ${missing[*]}"
}

# Both steps always run (a machine may have every Debian package and still lack Garage); the
# script fails if either did. (`set -e` does not apply inside a function called before `||`:
# each step checks its own result instead.)
status=0
install_packages || status=1
if [ "$demo" -eq 1 ]; then
    log "--demo: skipping Garage (only the S3 tests need it)"
else
    install_garage || status=1
fi
exit "$status"
