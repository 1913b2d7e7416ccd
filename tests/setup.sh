#!/usr/bin/env bash
# Install what keepsake's tests and `keepsake demo` need on a fresh Debian/Ubuntu machine:
#   - PostgreSQL server binaries (initdb, pg_ctl, postgres) and client tools (pg_dump,
#     pg_restore, psql), from the `postgresql` package
#   - age   (the tests decrypt chunks with the age CLI to prove interoperability)
#   - zstd  (the same, for decompressing chunks)
#
# Idempotent: installs only what is missing and runs `apt-get update` only when something has
# to be installed. It starts no service and creates no cluster itself; the tests start their
# own throwaway clusters. (Debian's postgresql package may create and start a cluster "main"
# on install; the tests do not use it.)
#
# Run as root, or as a user who can sudo.
set -euo pipefail

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
if command -v age >/dev/null 2>&1; then
    log "age present: $(command -v age)"
else
    missing+=(age)
fi
if command -v zstd >/dev/null 2>&1; then
    log "zstd present: $(command -v zstd)"
else
    missing+=(zstd)
fi
# openssl (CLI only): the TLS test makes its certificates with it. keepsake itself uses rustls.
if command -v openssl >/dev/null 2>&1; then
    log "openssl present: $(command -v openssl)"
else
    missing+=(openssl)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    log "nothing to install"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    log "missing packages: ${missing[*]}; run this script as root (or install sudo)" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    log "missing packages: ${missing[*]}; this script knows only apt-get (Debian/Ubuntu): install them by hand" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log "installing: ${missing[*]}"
${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -q
${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"

# Check the result rather than trusting the exit code alone.
failed=0
if ! have_pg_server; then
    log "still no /usr/lib/postgresql/*/bin/initdb after installing postgresql" >&2
    failed=1
fi
for c in age zstd; do
    if ! command -v "$c" >/dev/null 2>&1; then
        log "still no '$c' command after installing" >&2
        failed=1
    fi
done
[ "$failed" -eq 0 ] || exit 1
log "installed: ${missing[*]}"
