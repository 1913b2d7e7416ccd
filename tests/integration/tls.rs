//! TLS to the source, as with hosted databases: libpq's sslmode semantics hold for both
//! keepsake's own connection (rustls) and pg_dump (libpq), and a certificate that does not
//! verify fails clearly. Certificates are made with the openssl CLI (test-only).

use std::path::Path;
use std::process::Command;

use crate::support::{Env, AWKWARD_SQL};

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A CA and a server certificate for `db.example.test` (not for 127.0.0.1), plus an
/// unrelated CA.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=keepsake test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=other CA",
            "-keyout",
            "other.key",
            "-out",
            "other.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=db.example.test",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:db.example.test\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext",
            "-out",
            "server.pem",
        ],
    );
}

#[test]
fn sslmodes_behave_like_libpq_for_keepsake_and_pg_dump() {
    let mut env = Env::new("awk", Some(AWKWARD_SQL));
    let certs = env.dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    make_certs(&certs);
    let cert = std::fs::read(certs.join("server.pem")).expect("cert");
    let key = std::fs::read(certs.join("server.key")).expect("key");
    env.cluster
        .reconfigure(
            &[("server.pem", &cert), ("server.key", &key)],
            "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'",
            Some("local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n"),
        )
        .expect("enable TLS");

    let with_url = |query: &str| {
        let text = env
            .config_text("awk", None, &env.identity)
            .replace("?sslmode=disable", query);
        std::fs::write(&env.config, text).expect("config");
    };
    let ca = certs.join("ca.pem");
    let other = certs.join("other.pem");

    // The server refuses plaintext: sslmode=disable fails, clearly, without the password.
    with_url("?sslmode=disable");
    let r = env.keepsake(&["backup", "--type", "full"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("cannot connect") && r.stderr.contains("no encryption"),
        "{}",
        r.stderr
    );
    assert!(!r.all().contains(env.cluster.password.expose()));

    // require: encrypted, certificate not checked — both keepsake and pg_dump connect.
    with_url("?sslmode=require");
    let r = env.keepsake(&["backup", "--type", "full", "--json"]).ok();
    assert!(r.stdout.contains("\"completed\""), "{}", r.stdout);

    // verify-ca with the right CA: the chain is checked, the host name is not.
    with_url(&format!("?sslmode=verify-ca&sslrootcert={}", ca.display()));
    env.keepsake(&["backup", "--type", "incremental"]).ok();

    // verify-full: the certificate is for db.example.test, not 127.0.0.1 → refused.
    with_url(&format!(
        "?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ));
    let r = env.keepsake(&["backup"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.to_lowercase().contains("certificate"),
        "{}",
        r.stderr
    );

    // verify-ca with an unrelated CA → refused.
    with_url(&format!(
        "?sslmode=verify-ca&sslrootcert={}",
        other.display()
    ));
    let r = env.keepsake(&["backup"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.to_lowercase().contains("certificate"),
        "{}",
        r.stderr
    );

    // Restore over TLS too.
    let target = format!(
        "postgres://postgres@127.0.0.1:{}/awk_tls?sslmode=verify-ca&sslrootcert={}",
        env.cluster.port,
        ca.display()
    );
    let list: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["list", "--json"]).ok().stdout).expect("json");
    let id = list[0]["id"].as_str().expect("id").to_string();
    env.keepsake(&[
        "restore",
        &id,
        "--target",
        &target,
        "--target-password",
        &format!("file:{}", env.password_file.display()),
        "--create",
    ])
    .ok();
    assert_eq!(env.fingerprint("awk_tls"), env.fingerprint("awk"));
}
