# Sourced by benchmark scripts: a throwaway PostgreSQL cluster in "$T/data", run as `postgres`
# on 127.0.0.1, a free port, scram-sha-256 with a random password in "$T/pw".
# Needs T (a directory `postgres` may write) and PG (the server's bin directory).
# Gives: free_port; pg_init (sets PORT, writes $T/pw, runs initdb); pg_start [-c OPTION…];
# pg_stop [MODE] (default fast); pg_kill (immediate, for the EXIT trap; never fails).

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

pg_init() {
    PORT=$(free_port)
    head -c 24 /dev/urandom | base64 > "$T/pw"
    chown postgres "$T/pw"
    runuser -u postgres -- "$PG/initdb" -D "$T/data" -U postgres --pwfile="$T/pw" -A scram-sha-256 >/dev/null
}

# The server never inherits a PGPASSWORD the script exported for psql.
pg_start() {
    env -u PGPASSWORD runuser -u postgres -- "$PG/pg_ctl" -D "$T/data" -w -l "$T/pg.log" -o "-p $PORT \
        -c listen_addresses=127.0.0.1 -c unix_socket_directories=$T $*" start >/dev/null
}

pg_stop() { runuser -u postgres -- "$PG/pg_ctl" -D "$T/data" -m "${1:-fast}" -w stop >/dev/null; }

pg_kill() { runuser -u postgres -- "$PG/pg_ctl" -D "$T/data" -m immediate stop >/dev/null 2>&1 || true; }
