//! Load client for the control API (`benches/api-load.sh` drives it): CLIENTS concurrent
//! clients send REQUESTS requests each over the daemon's Unix socket, cycling through PATHS,
//! one connection per request (as `curl` and most scrapers do). Prints p50, p99 and max
//! latency per path and the overall rate.
//!
//!     cargo bench --bench api_load -- SOCKET [CLIENTS] [REQUESTS] [PATHS]
//!
//! defaults: 50 clients, 200 requests each, `/v1/status,/v1/backups`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keepsake::api::client::Client;

fn pct(v: &[Duration], p: f64) -> Duration {
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary with no
    // arguments at all: then there is nothing to measure, and that is not a failure.
    let benching = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(socket) = args.first().cloned() else {
        eprintln!(
            "usage: api_load SOCKET [CLIENTS] [REQUESTS] [PATHS] (benches/api-load.sh runs it)"
        );
        std::process::exit(if benching { 2 } else { 0 });
    };
    let clients: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50);
    let requests: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let paths: Vec<String> = args
        .get(3)
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| vec!["/v1/status".into(), "/v1/backups".into()]);
    let client = Client::unix(&socket);
    // Warm the daemon's view once.
    for p in &paths {
        let a = client.get(p).await.expect("first request");
        assert_eq!(a.status, 200, "{p}: {}", a.text());
        eprintln!("{p}: {} bytes per answer", a.body.len());
    }
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let client = client.clone();
            let paths = paths.clone();
            tokio::spawn(async move {
                let mut out: Vec<(String, Duration)> = Vec::with_capacity(requests);
                for i in 0..requests {
                    let p = &paths[(c + i) % paths.len()];
                    let t = Instant::now();
                    let a = client.get(p).await.expect("request");
                    assert_eq!(a.status, 200, "{p}");
                    out.push((p.clone(), t.elapsed()));
                }
                out
            })
        })
        .collect();
    let mut by_path: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for t in tasks {
        for (p, d) in t.await.expect("client task") {
            by_path.entry(p).or_default().push(d);
        }
    }
    let total = start.elapsed();
    let n: usize = by_path.values().map(Vec::len).sum();
    println!(
        "{n} requests, {clients} concurrent clients, {:.1} s, {:.0} requests/s",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
    for (p, mut v) in by_path {
        v.sort();
        println!(
            "{p:<14} n={:<6} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
            v.len(),
            pct(&v, 0.5).as_secs_f64() * 1e3,
            pct(&v, 0.99).as_secs_f64() * 1e3,
            v[v.len() - 1].as_secs_f64() * 1e3
        );
    }
}
