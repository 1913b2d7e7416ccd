//! S3 against a real Garage server: faults injected by a seeded proxy are retried and the data
//! round-trips exactly; an exhausted retry budget fails cleanly without a manifest and without
//! harming earlier backups; wrong credentials, a missing bucket and an unreachable endpoint fail
//! fast and clearly, never printing a secret. (The core suite runs on S3 too: see
//! `both_backends!` in roundtrip, changes, failures and verify.)

use std::time::{Duration, Instant};

use crate::support::faultproxy::{FaultProxy, Faults};
use crate::support::garage::Garage;
use crate::support::{Backend, Env, WEDDING_SQL};

/// Packs of 6 MiB with a 5 MiB multipart threshold, so pack uploads go up in parts.
const MULTIPART: &str = "multipart_threshold_mib = 5\npart_size_mib = 5\nupload_concurrency = 3\n\n[backup]\npack_size_mib = 6\n";

/// Point `env` at `endpoint` (a fault proxy, or back at Garage).
fn set_endpoint(env: &mut Env, endpoint: &str) {
    env.s3.as_mut().expect("s3 env").endpoint = endpoint.to_string();
    env.write_config("wed", None, &env.identity.clone());
}

#[test]
fn faults_are_retried_and_data_round_trips_exactly() {
    let mut env = Env::with_s3_extra(Backend::S3, "wed", Some(WEDDING_SQL), MULTIPART);
    let before = env.fingerprint("wed");
    let garage = Garage::shared();
    let proxy = FaultProxy::start(
        garage.addr(),
        20261126,
        Faults {
            slowdown: 0.2,
            cut_upload: 0.1,
            reset_mid_body: 0.05,
            stall: 0.05,
            stall_for: Duration::from_secs(2),
            ..Faults::default()
        },
    );
    set_endpoint(&mut env, &proxy.endpoint());

    let r = env.keepsake(&["backup", "--type", "full", "--json"]).ok();
    assert!(
        r.stderr.contains("retrying"),
        "retries must be visible in the log: {}",
        r.stderr
    );
    let b: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let id = b[0]["id"].as_str().expect("id").to_string();
    // Multipart really happened: some pack is above the threshold.
    set_endpoint(&mut env, &garage.endpoint());
    let store = env.store();
    let big = crate::support::block_on(store.list("packs/"))
        .expect("list")
        .into_iter()
        .filter(|o| o.size > 5 << 20)
        .count();
    assert!(big > 0, "no pack above the multipart threshold");
    set_endpoint(&mut env, &proxy.endpoint());

    // Downloads: truncated bodies and resets on the way back.
    proxy.set_faults(Faults {
        slowdown: 0.2,
        truncate_download: 0.2,
        reset_mid_body: 0.1,
        ..Faults::default()
    });
    env.keepsake(&["verify", &id, "--level", "data"]).ok();
    env.restore_new(&id, "wed_copy").ok();
    assert_eq!(
        env.fingerprint("wed_copy"),
        before,
        "data differs after restore"
    );
    assert_eq!(env.schema("wed_copy"), env.schema("wed"));

    let s = proxy.stats();
    eprintln!("fault proxy: {s:?}");
    assert!(s.slowdown > 0, "{s:?}");
    assert!(s.cut_upload > 0, "{s:?}");
    assert!(s.reset > 0, "{s:?}");
    assert!(s.stalled > 0, "{s:?}");
    assert!(s.truncated > 0, "{s:?}");
}

#[test]
fn exhausted_retry_budget_fails_cleanly_and_harms_nothing() {
    let mut env = Env::with_s3_extra(
        Backend::S3,
        "wed",
        Some(WEDDING_SQL),
        "max_attempts = 4\nretry_budget = \"20s\"\n\n[backup]\npack_size_mib = 2\n",
    );
    let before = env.fingerprint("wed");
    let first = env.backup("full");
    let first_id = first["id"].as_str().expect("id").to_string();
    let snapshots = env.object_keys("snapshots/");
    assert_eq!(snapshots.len(), 1);

    let garage = Garage::shared();
    let proxy = FaultProxy::start(garage.addr(), 1, Faults::default());
    set_endpoint(&mut env, &proxy.endpoint());
    // Let the backup open the repository and start uploading, then fail every request.
    let child = env
        .keepsake_cmd(&["backup", "--type", "full"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let t = Instant::now();
    while proxy.stats().requests < 12 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "backup made no requests"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    proxy.set_faults(Faults {
        fail_all: true,
        ..Faults::default()
    });
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("gave up after 4 attempts") && stderr.contains("SlowDown"),
        "{stderr}"
    );
    assert!(t.elapsed() < Duration::from_secs(60));

    set_endpoint(&mut env, &garage.endpoint());
    assert_eq!(
        env.object_keys("snapshots/"),
        snapshots,
        "a manifest appeared"
    );
    env.keepsake(&["verify", "--all", "--level", "structure"])
        .ok();
    // Restore reads adjacent chunks with one ranged GET: far fewer requests than chunks.
    let pw = format!("file:{}", env.password_file.display());
    let out = env
        .keepsake_cmd(&[
            "restore",
            &first_id,
            "--target",
            &env.target("wed_after"),
            "--target-password",
            &pw,
            "--create",
        ])
        .env("KEEPSAKE_LOG", "info")
        .output()
        .expect("restore");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(env.fingerprint("wed_after"), before);
    let show: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["show", &first_id, "--json"]).ok().stdout)
            .expect("json");
    let chunks = show["chunks"].as_u64().expect("chunks");
    let gets: u64 = log
        .split("GET ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request summary in: {log}"));
    eprintln!("restore of {chunks} chunks took {gets} GET requests");
    assert!(gets * 4 < chunks, "{gets} GETs for {chunks} chunks");
}

#[test]
fn bad_credentials_missing_bucket_and_unreachable_endpoint_fail_fast_and_clearly() {
    let env = Env::with_backend(Backend::S3, "wed", None);
    let garage = Garage::shared();
    let good = env.repository_toml();
    let config = std::fs::read_to_string(&env.config).expect("config");
    let with_repo = |repo: &str| config.replace(&good, repo);

    // Wrong secret key: access denied, the secret never shown.
    let bad_secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    std::fs::write(env.dir.path().join("s3-secret"), bad_secret).expect("write");
    let t = Instant::now();
    let r = env.keepsake(&["list"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("access denied"), "{}", r.stderr);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    for secret in [bad_secret, garage.secret_key()] {
        assert!(!r.all().contains(secret), "secret printed: {}", r.all());
    }
    std::fs::write(env.dir.path().join("s3-secret"), garage.secret_key()).expect("write");
    env.keepsake(&["list"]).ok();

    // A bucket that does not exist.
    let cfg = with_repo(&good.replace(
        &format!("s3://{}/", garage.bucket()),
        "s3://no-such-bucket-here/",
    ));
    std::fs::write(&env.config, cfg).expect("write");
    let t = Instant::now();
    let r = env.keepsake(&["list"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("no-such-bucket-here") && r.stderr.contains("does not exist"),
        "{}",
        r.stderr
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let cfg = with_repo(&good.replace(&garage.endpoint(), &format!("http://127.0.0.1:{port}")));
    std::fs::write(&env.config, cfg).expect("write");
    let t = Instant::now();
    let r = env.keepsake(&["list"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("cannot reach"), "{}", r.stderr);
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert!(!r.all().contains(garage.secret_key()));

    // Configuration mistakes are exit 2 with the line and key.
    let cfg = with_repo(&good.replace(&garage.endpoint(), "ftp://127.0.0.1:21"));
    std::fs::write(&env.config, cfg).expect("write");
    let r = env.keepsake(&["config", "check"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("repository.endpoint"), "{}", r.stderr);
}

#[test]
fn interrupted_backup_is_resumed_without_uploading_again() {
    let mut env = Env::with_s3_extra(
        Backend::S3,
        "wed",
        None,
        "upload_concurrency = 1\n\n[backup]\npack_size_mib = 1\n",
    );
    env.psql(
        "wed",
        "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS a FROM generate_series(1, 400000) g",
    );
    let before = env.fingerprint("wed");
    let garage = Garage::shared();
    // A slow link, so the backup is still running when it is killed.
    let proxy = FaultProxy::start(
        garage.addr(),
        5,
        Faults {
            stall: 0.5,
            stall_for: Duration::from_millis(1000),
            ..Faults::default()
        },
    );
    // Watch the bucket directly (the config file must not change under the running backup).
    let direct = env.store();
    let indexes = || {
        crate::support::block_on(direct.list("index/"))
            .expect("list")
            .len()
    };
    set_endpoint(&mut env, &proxy.endpoint());
    let mut child = env
        .keepsake_cmd(&["backup", "--type", "full"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let t = Instant::now();
    // Kill it (SIGKILL: no cleanup at all) once a checkpoint index is stored.
    while indexes() == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no checkpoint index"
        );
        if child.try_wait().expect("wait").is_some() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the backup ended before a checkpoint was seen: {err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
    set_endpoint(&mut env, &garage.endpoint());
    assert!(env.object_keys("snapshots/").is_empty());
    let orphans = env.pack_keys();
    assert!(orphans.len() >= 4, "{orphans:?}");

    let out = env
        .keepsake_cmd(&["backup", "--type", "full", "--json"])
        .env("KEEPSAKE_LOG", "info")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resuming"), "{stderr}");
    let resumed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let resumed = &resumed[0];
    let again = env.backup("full");
    let (s, f) = (
        resumed["stored_bytes"].as_u64().expect("n"),
        again["stored_bytes"].as_u64().expect("n"),
    );
    eprintln!("resumed full stored {s} bytes; an uninterrupted full stored {f}");
    assert!(
        s + (3 << 20) < f,
        "resumed {s} vs full {f}: packs were uploaded again"
    );
    // The adopted packs are now referenced: nothing of it is garbage.
    for p in &orphans {
        assert!(env.pack_keys().contains(p), "{p} went missing");
    }
    env.keepsake(&["verify", "--all", "--level", "data"]).ok();
    env.restore_new(resumed["id"].as_str().expect("id"), "wed_resumed")
        .ok();
    assert_eq!(env.fingerprint("wed_resumed"), before);
}

#[test]
fn stale_multipart_uploads_are_aborted() {
    let env = Env::with_backend(Backend::S3, "wed", None);
    let garage = Garage::shared();
    let prefix = env.s3.as_ref().expect("s3").prefix.clone();
    // An upload a crashed keepsake left open (made with the SDK directly).
    let client = sdk_client(garage);
    let key = format!("{prefix}/packs/ab/left-over");
    let uploads = || {
        crate::support::block_on(
            client
                .list_multipart_uploads()
                .bucket(garage.bucket())
                .prefix(format!("{prefix}/"))
                .send(),
        )
        .expect("list uploads")
        .uploads()
        .len()
    };
    crate::support::block_on(
        client
            .create_multipart_upload()
            .bucket(garage.bucket())
            .key(&key)
            .send(),
    )
    .expect("create upload");
    assert_eq!(uploads(), 1);
    let store = env.store();
    // Younger than the age limit: kept (it may belong to a running backup)…
    let n = crate::support::block_on(store.remove_stale_temporaries(Duration::from_secs(3600)))
        .expect("sweep");
    assert_eq!((n, uploads()), (0, 1));
    // …older: aborted.
    std::thread::sleep(Duration::from_millis(1100));
    let n = crate::support::block_on(store.remove_stale_temporaries(Duration::from_secs(1)))
        .expect("sweep");
    assert_eq!((n, uploads()), (1, 0));
}

#[test]
fn uploads_carry_crc32c_and_fall_back_to_md5_when_the_store_does_not_confirm_it() {
    let mut env = Env::with_backend(Backend::S3, "wed", Some(WEDDING_SQL));
    let before = env.fingerprint("wed");
    let garage = Garage::shared();
    let backup = |env: &Env| {
        env.keepsake_cmd(&["backup", "--type", "full", "--json"])
            .env("KEEPSAKE_LOG", "info")
            .output()
            .expect("run keepsake")
    };
    const FELL_BACK: &str = "does not confirm CRC32C checksums: uploads carry Content-MD5";

    // Garage verifies x-amz-checksum-crc32c and echoes it: no fallback.
    let out = backup(&env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(FELL_BACK), "{stderr}");

    // A store that does not echo the checksum (as a store ignoring the header would not):
    // "auto" switches to Content-MD5 and the backup is sound.
    let proxy = FaultProxy::start(
        garage.addr(),
        7,
        Faults {
            drop_response_headers: vec!["x-amz-checksum-crc32c".into()],
            ..Faults::default()
        },
    );
    set_endpoint(&mut env, &proxy.endpoint());
    let out = backup(&env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(FELL_BACK), "{stderr}");
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = b[0]["id"].as_str().expect("id").to_string();
    set_endpoint(&mut env, &garage.endpoint());
    env.keepsake(&["verify", &id, "--level", "data"]).ok();
    env.restore_new(&id, "wed_md5").ok();
    assert_eq!(env.fingerprint("wed_md5"), before);

    // upload_checksum = "crc32c" insists: an unconfirmed upload fails the backup, no manifest.
    let snapshots = env.object_keys("snapshots/");
    env.s3.as_mut().expect("s3").extra = "upload_checksum = \"crc32c\"\n".into();
    set_endpoint(&mut env, &proxy.endpoint());
    let out = backup(&env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("did not confirm the x-amz-checksum-crc32c")
            && stderr.contains("upload_checksum = \"md5\""),
        "{stderr}"
    );
    set_endpoint(&mut env, &garage.endpoint());
    assert_eq!(
        env.object_keys("snapshots/"),
        snapshots,
        "a manifest appeared"
    );

    // "md5" never tries CRC32C.
    env.s3.as_mut().expect("s3").extra = "upload_checksum = \"md5\"\n".into();
    set_endpoint(&mut env, &proxy.endpoint());
    let out = backup(&env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(FELL_BACK), "{stderr}");
}

/// Regression (issue 13, defect 2): packs that cannot be read (the store fails every read,
/// retries exhausted) make a verification *not proven* (exit 1), never damage — no failure
/// record, the backup keeps its proven level, and retention still counts on it.
#[test]
fn unreadable_packs_are_not_proven_never_damage() {
    let mut env = Env::with_backend(Backend::S3, "wed", Some(WEDDING_SQL));
    let garage = Garage::shared();
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    env.keepsake(&["verify", &id, "--level", "data"]).ok();
    let proxy = FaultProxy::start(
        garage.addr(),
        13,
        Faults {
            fail_all: true,
            only_paths_containing: vec!["/packs/".into()],
            only_gets: true,
            ..Faults::default()
        },
    );
    env.s3.as_mut().expect("s3").extra = "max_attempts = 2\nretry_budget = \"5s\"\n".into();
    set_endpoint(&mut env, &proxy.endpoint());
    let r = env.keepsake(&["verify", &id, "--level", "data", "--json"]);
    assert_eq!(
        r.code,
        1,
        "could not read: not proven, not damage\n{}",
        r.all()
    );
    assert!(proxy.stats().slowdown > 0, "the pack reads were refused");
    set_endpoint(&mut env, &garage.endpoint());
    let list: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["list", "--json"]).ok().stdout).expect("list");
    assert_eq!(
        list[0]["verified_level"], "data",
        "no failure was recorded: {list}"
    );
    let st: serde_json::Value =
        serde_json::from_str(&env.keepsake(&["status", "--json"]).ok().stdout).expect("status");
    assert_eq!(st[0]["damaged"], serde_json::json!([]), "{st}");
}

/// The engine's view keeps the sealed manifests and verification records in the state
/// directory: a new process (a console opening on S3) reads only the listings, not every
/// object again. A cached file that does not authenticate is read again from the store, and a
/// forgotten backup's file goes.
#[test]
fn a_new_process_reads_manifests_and_records_from_the_state_directory_cache() {
    let mut env = Env::with_backend(Backend::S3, "wed", Some(WEDDING_SQL));
    let mut ids = vec![];
    for kind in ["full", "incremental", "incremental", "incremental"] {
        ids.push(env.backup(kind)["id"].as_str().expect("id").to_string());
    }
    env.keepsake(&["verify", "--all", "--level", "structure"])
        .ok();
    let cache = env.dir.path().join("state/cache");
    let _ = std::fs::remove_dir_all(&cache);
    let proxy = FaultProxy::start(Garage::shared().addr(), 7, Faults::default());
    set_endpoint(&mut env, &proxy.endpoint());
    let cold = env.keepsake(&["list", "--json"]).ok().stdout;
    let cold_requests = proxy.stats().requests;
    let warm = env.keepsake(&["list", "--json"]).ok().stdout;
    let warm_requests = proxy.stats().requests - cold_requests;
    assert_eq!(cold, warm, "the same answer from the cache");
    // 4 manifests and 4 records not read again.
    assert!(
        warm_requests + 8 <= cold_requests,
        "cold {cold_requests} requests, warm {warm_requests}"
    );
    // A tampered cached manifest is not trusted: read again, answer unchanged.
    let cached: Vec<std::path::PathBuf> = std::fs::read_dir(&cache)
        .expect("cache dir")
        .flatten()
        .map(|d| d.path().join("snapshots").join(&ids[1]))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(cached.len(), 1, "one cached manifest file for {}", ids[1]);
    let mut b = std::fs::read(&cached[0]).expect("read");
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(&cached[0], &b).expect("write");
    let again = env.keepsake(&["list", "--json"]).ok().stdout;
    assert_eq!(again, cold);
    assert_ne!(std::fs::read(&cached[0]).expect("re-cached"), b);
    // A forgotten backup's cached manifest is removed.
    env.keepsake(&["delete", &ids[1], "--confirm", &ids[1]])
        .ok();
    env.keepsake(&["list"]).ok();
    assert!(
        !cached[0].exists(),
        "the cache forgets what the listing forgot"
    );
}

/// An S3 client of the shared Garage server made with the SDK directly: what someone else with
/// write access to the bucket can do, outside keepsake's own checks.
fn sdk_client(garage: &Garage) -> aws_sdk_s3::Client {
    let creds = aws_sdk_s3::config::Credentials::new(
        garage.access_key(),
        garage.secret_key(),
        None,
        None,
        "test",
    );
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(garage.region().to_string()))
        .endpoint_url(garage.endpoint())
        .force_path_style(true)
        .credentials_provider(creds)
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Regression (issue 26, HIGH): object names in a bucket listing are whatever a writer to the
/// bucket chose. `snapshots/../../../audit.jsonl` made the view join the name to its cache
/// folder, find a "cached manifest" that did not authenticate — the daemon's audit log — and
/// delete it. Names that are not of the repository's own format are ignored: no file outside
/// the cache is read or removed, and the real backups are still listed.
#[test]
fn object_names_from_the_bucket_never_reach_outside_the_cache() {
    let env = Env::with_backend(Backend::S3, "wed", Some(WEDDING_SQL));
    let id = env.backup("full")["id"].as_str().expect("id").to_string();
    env.keepsake(&["verify", &id, "--level", "structure"]).ok();
    let garage = Garage::shared();
    let prefix = env.s3.as_ref().expect("s3").prefix.clone();
    let client = sdk_client(garage);
    let state = env.dir.path().join("state");
    env.keepsake(&["list"]).ok();
    let cache: Vec<std::path::PathBuf> = std::fs::read_dir(state.join("cache"))
        .expect("cache dir")
        .flatten()
        .map(|d| d.path())
        .collect();
    assert_eq!(cache.len(), 1, "one cache folder: {cache:?}");
    // Files a crafted name would reach from cache/<repo>/<prefix>/: three and four levels up.
    let victims = [state.join("audit.jsonl"), env.dir.path().join("victim")];
    for v in &victims {
        std::fs::write(v, b"precious\n").expect("victim");
    }
    for key in [
        "snapshots/../../../audit.jsonl",
        "snapshots/../../../../victim",
        "verifications/../../../audit.jsonl",
        &format!("verifications/{id}/../../../../audit.jsonl"),
        "drills/../../../audit.jsonl",
    ] {
        crate::support::block_on(
            client
                .put_object()
                .bucket(garage.bucket())
                .key(format!("{prefix}/{key}"))
                .body(b"not a sealed object".to_vec().into())
                .send(),
        )
        .expect("put a crafted object");
    }
    for _ in 0..2 {
        let listed = env.keepsake(&["list", "--json"]).ok().json();
        let ids: Vec<&str> = listed
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|b| b["id"].as_str())
            .collect();
        assert_eq!(ids, [id.as_str()], "only the real backup is listed");
        env.keepsake(&["drills", "--json"]).ok();
        env.keepsake(&["show", &id]).ok();
    }
    for v in &victims {
        assert_eq!(
            std::fs::read(v).expect("the file outside the cache is still there"),
            b"precious\n",
            "{}",
            v.display()
        );
    }
}
