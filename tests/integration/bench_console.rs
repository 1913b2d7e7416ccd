//! The console's measurements (issue 15), run by `benches/console.sh` — ignored in
//! `cargo test` (they take minutes and print numbers rather than pass or fail on them):
//! time from start to a drawn Overview with 1,000 backups in an S3 repository, cold (empty
//! state directory cache) and warm, the console's peak memory, and the bytes it sends to the
//! terminal per second while a backup runs.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Backend, Env};

fn tmux(args: &[&str]) -> String {
    let o = Command::new("tmux").args(args).output().expect("tmux");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The pid of the process running in the pane's shell.
fn console_pid(session: &str) -> Option<u32> {
    let shell = tmux(&["display", "-p", "-t", session, "#{pane_pid}"]);
    let kids = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        shell.trim(),
        shell.trim()
    ))
    .ok()?;
    kids.split_whitespace().next()?.parse().ok()
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Start the console in a fresh 80×24 tmux session; seconds until `ready` is on screen.
fn open(env: &Env, session: &str, ready: &str) -> (f64, Option<u64>) {
    tmux(&[
        "new-session",
        "-d",
        "-x",
        "80",
        "-y",
        "24",
        "-s",
        session,
        "bash",
        "--norc",
        "--noprofile",
    ]);
    let cmd = format!(
        "NO_COLOR=1 {} --config {} console --local",
        crate::support::bin(),
        env.config.display()
    );
    let t = Instant::now();
    tmux(&["send-keys", "-t", session, &cmd, "Enter"]);
    loop {
        let s = tmux(&["capture-pane", "-p", "-t", session]);
        if s.contains(ready) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "no Overview:\n{s}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = t.elapsed().as_secs_f64();
    let hwm = console_pid(session).and_then(vm_hwm_kib);
    (took, hwm)
}

fn close(session: &str) {
    tmux(&["send-keys", "-t", session, "q"]);
    std::thread::sleep(Duration::from_millis(500));
    tmux(&["kill-session", "-t", session]);
}

#[test]
#[ignore = "benchmark: benches/console.sh"]
fn bench_console_startup_and_terminal_bytes() {
    let n: usize = std::env::var("KEEPSAKE_BENCH_BACKUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let env = Env::with_backend(Backend::S3, "bench", None);
    env.psql(
        "bench",
        "CREATE TABLE guests AS SELECT g AS id, md5(g::text) AS name, g % 300 AS wedding FROM generate_series(1, 1500000) g",
    );
    let first = env.backup("full")["id"].as_str().expect("id").to_string();
    env.keepsake(&["verify", &first, "--level", "data"]).ok();
    // n − 1 more manifests: copies of the first under new ids (same packs), written through
    // the library like a backup commits them — what the console lists and reads is the same.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let cfg = keepsake::config::load(&env.config).expect("config");
        let repo = keepsake::engine::open(&cfg).await.expect("repo");
        let m = repo.manifest_exact(&first).await.expect("manifest");
        for i in 1..n {
            let mut c = m.clone();
            c.id = format!("20250101T{:06}Z-{:06x}", i, i);
            c.started_at -= chrono::Duration::hours(i as i64);
            c.finished_at -= chrono::Duration::hours(i as i64);
            repo.commit_manifest(&c).await.expect("commit");
        }
    });
    let cache = env.dir.path().join("state/cache");
    let _ = std::fs::remove_dir_all(&cache);
    let ready = format!("{n} backups");
    let (cold, cold_hwm) = open(&env, "ks-bench-cold", &ready);
    close("ks-bench-cold");
    let (warm, warm_hwm) = open(&env, "ks-bench-warm", &ready);
    // Bytes to the terminal while a backup runs: b, f, then count what the pane receives.
    let bytes = env.dir.path().join("pane.bytes");
    tmux(&[
        "pipe-pane",
        "-o",
        "-t",
        "ks-bench-warm",
        &format!("cat >> {}", bytes.display()),
    ]);
    tmux(&["send-keys", "-t", "ks-bench-warm", "b"]);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    tmux(&["send-keys", "-t", "ks-bench-warm", "f"]);
    let before = n;
    loop {
        let s = tmux(&["capture-pane", "-p", "-t", "ks-bench-warm"]);
        if s.contains(&format!("{} backups", before + 1)) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "the backup did not end:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let secs = t.elapsed().as_secs_f64();
    let sent = std::fs::metadata(&bytes).map(|m| m.len()).unwrap_or(0);
    close("ks-bench-warm");

    // Attached to a daemon: bytes sent while idle, and how soon a backup someone else starts
    // on the daemon (through its API) shows on the screen (issue 27: < 0.5 s).
    let mut daemon = env.spawn_daemon();
    let socket = env.dir.path().join("state/keepsake.sock");
    let api = keepsake::api::client::Client::unix(&socket);
    let answers = |c: &keepsake::api::client::Client| {
        rt.block_on(c.request("GET", "/v1/status", None))
            .is_ok_and(|a| a.status == 200)
    };
    let t = Instant::now();
    while !answers(&api) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the daemon does not answer"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let session = "ks-bench-attached";
    tmux(&[
        "new-session",
        "-d",
        "-x",
        "80",
        "-y",
        "24",
        "-s",
        session,
        "bash",
        "--norc",
        "--noprofile",
    ]);
    let cmd = format!(
        "NO_COLOR=1 {} --config {} console",
        crate::support::bin(),
        env.config.display()
    );
    tmux(&["send-keys", "-t", session, &cmd, "Enter"]);
    let t = Instant::now();
    while !tmux(&["capture-pane", "-p", "-t", session]).contains("attached") {
        assert!(t.elapsed() < Duration::from_secs(120), "not attached");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(3));
    let idle_bytes = env.dir.path().join("idle.bytes");
    tmux(&[
        "pipe-pane",
        "-o",
        "-t",
        session,
        &format!("cat >> {}", idle_bytes.display()),
    ]);
    std::thread::sleep(Duration::from_secs(30));
    tmux(&["pipe-pane", "-t", session]);
    let idle = std::fs::metadata(&idle_bytes).map(|m| m.len()).unwrap_or(0);
    let mut seen_after = vec![];
    for _ in 0..5 {
        let body = serde_json::json!({"source": "main", "type": "incremental"});
        let a = rt
            .block_on(api.request("POST", "/v1/backups", Some(&body)))
            .expect("start a backup");
        let t = Instant::now();
        assert_eq!(a.status, 202, "{:?}", a.body);
        let job = a.json()["job"].as_str().expect("job").to_string();
        loop {
            let s = tmux(&["capture-pane", "-p", "-t", session]);
            if s.contains("● backup main") {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "not shown:\n{s}");
            std::thread::sleep(Duration::from_millis(5));
        }
        seen_after.push(t.elapsed().as_secs_f64());
        let _ = rt.block_on(api.request("POST", &format!("/v1/jobs/{job}/cancel"), None));
        let t = Instant::now();
        while tmux(&["capture-pane", "-p", "-t", session]).contains("● backup main") {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the backup did not end"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    close(session);
    crate::support::kill(daemon.id(), "TERM");
    let _ = crate::support::wait_exit(&mut daemon, Duration::from_secs(30));
    seen_after.sort_by(|a, b| a.total_cmp(b));
    println!(
        "console, {n} backups on S3 (Garage, loopback): start to drawn Overview cold {cold:.2} s (peak RSS {} MiB), warm {warm:.2} s (peak RSS {} MiB)",
        cold_hwm.unwrap_or(0) / 1024,
        warm_hwm.unwrap_or(0) / 1024
    );
    println!(
        "console, during a {secs:.1} s backup: {sent} bytes to the terminal, {:.0} bytes/s",
        sent as f64 / secs
    );
    println!(
        "console attached to a daemon: idle 30 s: {idle} bytes to the terminal ({:.1} bytes/s); a backup started through the daemon's API shown after {} s (median of {}; each: {:?})",
        idle as f64 / 30.0,
        format_args!("{:.3}", seen_after[seen_after.len() / 2]),
        seen_after.len(),
        seen_after.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>()
    );
}
