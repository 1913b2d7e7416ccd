//! `keepsake demo`: the whole flow on a throwaway cluster and repository, with no
//! configuration. It loads the sample wedding-planning database (the same SQL the tests use),
//! takes a full backup, changes data, takes an incremental, restores it into a new database,
//! compares every table with the source, and reports timings and sizes.
//!
//! On a terminal the console then opens on the demo (docs/console.md, "The demo"); without
//! one the scripted flow is the whole demo.
//!
//! Invariant: everything lives in one temporary directory that is removed at the end unless
//! `--keep` is given; the cluster is stopped either way.

use std::time::Instant;

use crate::config::{self, Config};
use crate::core::crypto::generate_identity;
use crate::core::format::BackupType;
use crate::core::verify::Level;
use crate::engine::{
    self, Command, Engine, JobResult, RestoreRequest, RestoreTarget, VerifyTarget,
};
use crate::error::{Error, Result};
use crate::pg::client;
use crate::pg::cluster::TempCluster;
use crate::present::{backup_summary, human_bytes, verify_text};

/// The sample database (schema and data).
pub const WEDDING_SQL: &str = include_str!("../assets/sample/wedding.sql");
/// The realistic change applied between backups.
pub const CHANGE_SQL: &str = include_str!("../assets/sample/change.sql");

/// Run one engine job to its end; its result, or its failure as an error.
async fn job(e: &Engine, c: Command) -> Result<JobResult> {
    let o = e.submit(c)?.wait().await;
    match (o.exit_code, o.result) {
        (0, Some(r)) => Ok(r),
        (code, _) => {
            let msg = o.error.unwrap_or_else(|| format!("the {} failed", o.kind));
            Err(if code == 3 {
                Error::Damage(msg)
            } else {
                Error::Other(msg)
            })
        }
    }
}

fn step(n: usize, what: &str, t: Instant) {
    println!("[{n}] {what} ({:.1}s)", t.elapsed().as_secs_f64());
}

/// Opens a console on the demo's engine (given by `main.rs`, which chooses the faces).
pub type ConsoleFn =
    Box<dyn FnOnce(Engine) -> futures::future::BoxFuture<'static, Result<()>> + Send>;

/// The scripted flow; then, with `console` (stdout is a terminal), the console on the demo's
/// database and repository until the user quits. Cleanup runs after either.
pub async fn run(keep: bool, console: Option<ConsoleFn>) -> Result<()> {
    let t0 = Instant::now();
    println!("keepsake demo: a throwaway PostgreSQL cluster, a sample wedding-planning database, a fresh key and a local repository.");
    let cluster = tokio::task::spawn_blocking(TempCluster::start)
        .await
        .map_err(|e| Error::Other(e.to_string()))??;
    let dir = cluster.socket_dir().to_path_buf();
    step(
        1,
        &format!(
            "started PostgreSQL from {} on 127.0.0.1:{}",
            cluster.bin.display(),
            cluster.port
        ),
        t0,
    );

    let admin = client::connect(&cluster.conninfo("postgres")).await?;
    admin
        .batch_execute("CREATE DATABASE wedsync")
        .await
        .map_err(|e| Error::Postgres(client::describe(&e)))?;
    let t = Instant::now();
    let src = client::connect(&cluster.conninfo("wedsync")).await?;
    src.batch_execute(WEDDING_SQL)
        .await
        .map_err(|e| Error::Postgres(format!("loading sample data: {}", client::describe(&e))))?;
    step(2, "loaded sample data into database wedsync (couples, guests, vendors, timelines, payments, photos)", t);

    // Key, configuration, repository.
    let (identity, recipient) = generate_identity();
    let id_path = dir.join("identity.txt");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&id_path)
            .map_err(|e| Error::io("writing the demo identity", e))?;
        f.write_all(identity.as_bytes())
            .map_err(|e| Error::io("writing the demo identity", e))?;
    }
    let pw_path = dir.join("source-password");
    std::fs::write(&pw_path, cluster.password.expose())
        .map_err(|e| Error::io("writing the demo password", e))?;
    let repo_path = dir.join("repo");
    let cfg_path = dir.join("keepsake.toml");
    // The demo keeps its job history in its own directory: it never mixes with (or shows)
    // the jobs of real configurations.
    let cfg_text = format!(
        "[repository]\nurl = \"file://{}\"\n\n[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"{}\"\n\n[[sources]]\nname = \"wedsync\"\nurl = \"{}\"\npassword = \"file:{}\"\n\n[daemon]\nstate_dir = \"{}\"\n",
        repo_path.display(),
        id_path.display(),
        cluster.url("wedsync"),
        pw_path.display(),
        dir.join("state").display()
    );
    std::fs::write(&cfg_path, &cfg_text).map_err(|e| Error::io("writing the demo config", e))?;
    let cfg: Config = config::load(&cfg_path)?;
    engine::init(&cfg).await?;
    let e = Engine::new(cfg);
    println!(
        "[3] new age key {recipient}; repository at {}",
        repo_path.display()
    );

    let backup = |kind| Command::Backup {
        source: "wedsync".into(),
        kind: Some(kind),
        verify: None,
    };
    let JobResult::Backup { backup: full, .. } = job(&e, backup(BackupType::Full)).await? else {
        return Err(Error::Other(
            "internal: a backup job without a backup".into(),
        ));
    };
    print!("[4] {}", backup_summary(&full));

    let t = Instant::now();
    src.batch_execute(CHANGE_SQL)
        .await
        .map_err(|e| Error::Postgres(format!("changing sample data: {}", client::describe(&e))))?;
    step(5, "changed data: 1% of guests updated, guests added and removed, vendors and payments touched", t);

    let JobResult::Backup { backup: inc, .. } = job(&e, backup(BackupType::Incremental)).await?
    else {
        return Err(Error::Other(
            "internal: a backup job without a backup".into(),
        ));
    };
    print!("[6] {}", backup_summary(&inc));

    let target = cluster.conninfo("wedsync_restored");
    let restore = Command::Restore(
        RestoreRequest::new(inc.id.clone(), RestoreTarget::url(target.clone())).create(true),
    );
    let JobResult::Restore {
        bytes, duration_ms, ..
    } = job(&e, restore).await?
    else {
        return Err(Error::Other(
            "internal: a restore job without a result".into(),
        ));
    };
    println!(
        "[7] restored the incremental into new database wedsync_restored: {} in {:.1}s",
        human_bytes(bytes),
        duration_ms as f64 / 1000.0
    );

    let t = Instant::now();
    let dst = client::connect(&target).await?;
    let a = client::table_fingerprints(&src).await?;
    let b = client::table_fingerprints(&dst).await?;
    let rows: i64 = a
        .iter()
        .filter(|x| !x.0.starts_with('('))
        .map(|x| x.1)
        .sum();
    if a != b {
        let diffs: Vec<String> = a
            .iter()
            .zip(b.iter().map(Some).chain(std::iter::repeat(None)))
            .filter(|(x, y)| Some(*x) != *y)
            .map(|(x, y)| {
                format!(
                    "{} (source {} rows, restored {:?})",
                    x.0,
                    x.1,
                    y.map(|y| y.1)
                )
            })
            .collect();
        return Err(Error::Damage(format!(
            "the restored database differs from the source: {}",
            diffs.join("; ")
        )));
    }
    step(
        8,
        &format!(
            "compared {} tables ({rows} rows) and large objects: identical to the source",
            a.len() - 1
        ),
        t,
    );

    let verify = Command::Verify {
        target: VerifyTarget::Id(full.id.clone()),
        level: Level::Restore,
    };
    let JobResult::Verify { records, .. } = job(&e, verify).await? else {
        return Err(Error::Other(
            "internal: a verify job without records".into(),
        ));
    };
    for rec in &records {
        print!("[9] verify {}", verify_text(rec));
    }

    println!(
        "\nsummary: full {} stored {}; incremental stored {} ({:.1}% of the full); restore {:.1}s; total {:.1}s",
        human_bytes(full.logical_bytes),
        human_bytes(full.stored_bytes),
        human_bytes(inc.stored_bytes),
        inc.stored_bytes as f64 * 100.0 / full.stored_bytes.max(1) as f64,
        duration_ms as f64 / 1000.0,
        t0.elapsed().as_secs_f64()
    );
    drop(src);
    drop(dst);
    drop(admin);
    let console_result = match console {
        Some(open) => {
            println!("opening the console on the demo (q to leave; the demo is cleaned up after)…");
            tokio::time::sleep(std::time::Duration::from_millis(800)).await;
            open(e.clone()).await
        }
        None => Ok(()),
    };
    if keep {
        let kept = cluster.keep();
        println!(
            "kept {} (config keepsake.toml, repository repo/, identity identity.txt); the cluster was left running — stop it with: pg_ctl -D {}/data stop",
            kept.display(),
            kept.display()
        );
    } else {
        drop(cluster);
        println!("cleaned up: cluster stopped, directory removed (use --keep to look around)");
    }
    console_result
}
