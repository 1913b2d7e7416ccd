//! The audit log (docs/architecture.md, "The audit (`engine/audit.rs`)"; docs/api.md, "Audit
//! log"), `<state_dir>/audit.jsonl`. Two writers append to it: the engine's runner, one JSON
//! line per recorded job, whatever face started it (`cli`, `console`, `socket`, `tcp`,
//! `daemon`); and the control API, one line per request that changes something or is refused.
//!
//! Invariants:
//! - The lines form a hash chain: each carries the previous line's hash (`prev`, 64 zeros for
//!   the first) and its own (`hash` = SHA-256 over `prev` and the line up to the hash field),
//!   so an edited, removed or reordered line breaks the chain at that line.
//! - Writers from several processes (the daemon and CLI commands) keep one valid chain: each
//!   append holds an exclusive lock on the file while it reads the last line and writes its own.
//! - Every append records the chain's head (sequence and hash) in `audit.head`, authenticated
//!   with a key in `audit.key` that the log never holds, so a log cut short at its end is found
//!   too.
//! - No secret goes in: callers pass parameters that hold none (restore targets are
//!   `user@host:port/db`, never a password or full connection string).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The user name of `uid` (its number when the system has no name for it): the actor of a
/// socket request or a CLI command.
pub fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// The user this process runs as.
pub fn current_user() -> String {
    user_name(nix::unistd::geteuid().as_raw())
}

/// Who started a job, as the audit log and the job history record it: a person through a face
/// (`cli`, `console`), an API caller (`socket`, `tcp`, with its role) or the daemon's
/// scheduler. The engine's runner writes the audit line of every job with it, whatever face
/// started the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The Unix user, the token's name, or `schedule`.
    pub name: String,
    /// `viewer`, `operator`, `admin` for API callers; `local` for the CLI and a local
    /// console; `daemon` for the scheduler.
    pub role: String,
    /// `cli`, `console`, `socket`, `tcp` or `daemon`.
    pub via: String,
}

impl Actor {
    /// This process's user, at a local face (`cli` or `console`).
    pub fn local(via: &str) -> Actor {
        Actor {
            name: current_user(),
            role: "local".into(),
            via: via.into(),
        }
    }

    /// The daemon's scheduler.
    pub fn schedule() -> Actor {
        Actor {
            name: "schedule".into(),
            role: "daemon".into(),
            via: "daemon".into(),
        }
    }

    /// An API caller.
    pub fn api(name: &str, role: &str, via: &str) -> Actor {
        Actor {
            name: name.into(),
            role: role.into(),
            via: via.into(),
        }
    }

    /// As the job history's `started_by` shows it (`alice`, `alice (console)`,
    /// `ci (api)`, `schedule`).
    pub fn started_by(&self) -> String {
        match self.via.as_str() {
            "console" => format!("{} (console)", self.name),
            "socket" | "tcp" => format!("{} (api)", self.name),
            _ => self.name.clone(),
        }
    }
}

/// The hash before the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What is recorded about one action (`seq`, `time`, `prev` and `hash` are added on append).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// User name (socket, CLI, console), token name (TCP), or `schedule` (the daemon).
    pub actor: String,
    /// `viewer`, `operator`, `admin`; `local` for a CLI command or a local console (no API role
    /// involved); `daemon` for the daemon's scheduler.
    pub role: String,
    /// `socket`, `tcp`, `cli`, `console` or `daemon`.
    pub via: String,
    /// What was asked: `backup`, `verify`, `restore`, `prune`, `delete`, `cancel`,
    /// `config.update`, `config.read` (the configuration is sensitive even redacted) …
    pub action: String,
    /// What it was asked of (a source, a backup id, a job id), when there is one.
    pub target: Option<String>,
    /// Parameters without secrets.
    pub params: serde_json::Value,
    /// `accepted` (a job started: see `job`), `ok`, `refused`, `failed`, or `cancelled` (a job).
    pub outcome: String,
    /// HTTP status for API requests, the job's exit code for a job's line.
    pub code: u16,
    /// The job started, if any.
    pub job: Option<String>,
    /// Why it was refused or failed (a message meant for people, no internals).
    pub reason: Option<String>,
}

/// One line of the log as read back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    pub seq: u64,
    pub time: DateTime<Utc>,
    #[serde(flatten)]
    pub entry: Entry,
    pub prev: String,
    pub hash: String,
}

/// The audit log of a state directory.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

/// The hash field's prefix in a line: everything before it is what the hash covers.
const HASH_FIELD: &str = ",\"hash\":\"";

fn digest(prev: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    hex::encode(h.finalize())
}

/// The one writer of an audit log in this process: a thread of its own that appends, so that
/// the lock and the fsync of each line never hold an async worker. A request waits for its
/// line (the audit fails closed, and a flood of audited requests is slowed at the writer, not
/// queued without bound); requests that write nothing (`GET /v1/info`, the socket's status)
/// are answered meanwhile, even while another process holds the log's lock.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    log: AuditLog,
    tx: tokio::sync::mpsc::Sender<Ask>,
}

/// What the writer thread is asked.
#[derive(Debug)]
enum Ask {
    Append(Box<Entry>, tokio::sync::oneshot::Sender<Result<u64>>),
    Check(tokio::sync::oneshot::Sender<Result<()>>),
}

/// Lines waiting for the writer before askers wait to queue.
const WRITER_QUEUE: usize = 256;

impl AuditWriter {
    /// Start the writer thread of `log`; it ends when the last clone is dropped. A thread that
    /// cannot start leaves a writer whose every append fails: the audit fails closed.
    pub fn start(log: AuditLog) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Ask>(WRITER_QUEUE);
        let l = log.clone();
        std::thread::Builder::new()
            .name("keepsake-audit".into())
            .spawn(move || {
                while let Some(ask) = rx.blocking_recv() {
                    match ask {
                        Ask::Append(e, reply) => {
                            let _ = reply.send(l.append(&e));
                        }
                        Ask::Check(reply) => {
                            let _ = reply.send(l.check_writable());
                        }
                    }
                }
            })
            .map_err(|e| tracing::error!("cannot start the audit writer: {e}"))
            .ok();
        AuditWriter { log, tx }
    }

    pub fn log(&self) -> &AuditLog {
        &self.log
    }

    /// Append `entry` (see [`AuditLog::append`]), waiting for the writer without blocking.
    pub async fn append(&self, entry: Entry) -> Result<u64> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.ask(Ask::Append(Box::new(entry), reply), answer)
            .await?
    }

    /// See [`AuditLog::check_writable`].
    pub async fn check_writable(&self) -> Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.ask(Ask::Check(reply), answer).await?
    }

    async fn ask<T>(&self, ask: Ask, answer: tokio::sync::oneshot::Receiver<T>) -> Result<T> {
        let gone = || Error::Other("the audit writer has stopped".into());
        self.tx.send(ask).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }
}

impl AuditLog {
    pub fn new(state_dir: &Path) -> Self {
        AuditLog {
            path: state_dir.join("audit.jsonl"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the next line can be appended: the log opens for appending and ends in a whole
    /// record (or is empty). Writes nothing. A face that changes something checks this first
    /// and refuses the change when it fails: the audit fails closed.
    pub fn check_writable(&self) -> Result<()> {
        let mut f = self.open()?;
        f.lock_shared()
            .map_err(|e| Error::io(format!("locking the audit log {}", self.path.display()), e))?;
        let last = self.last_record(&mut f)?;
        self.check_not_rewound(last.as_ref())
    }

    /// A log whose end is before the head recorded beside it was cut short: nothing more is
    /// appended to it (that would hide the cut) until `keepsake audit verify` has named it and
    /// the log was set aside.
    fn check_not_rewound(&self, last: Option<&Line>) -> Result<()> {
        let at = last.map(|l| l.seq).unwrap_or(0);
        match self.read_head()? {
            Some(Ok((seq, _))) if seq > at => Err(Error::Other(format!(
                "the audit log {} ends at line {at} but its head records line {seq}: it was cut short; run `keepsake audit verify`, then set the log (and audit.head) aside",
                self.path.display()
            ))),
            _ => Ok(()),
        }
    }

    /// `audit.head` beside the log: the sequence and hash of its last line, authenticated with
    /// a key (`audit.key`, mode 0600) that the log itself never holds.
    fn head_path(&self) -> PathBuf {
        self.path.with_file_name("audit.head")
    }

    /// The head key (made on first use when `create`).
    fn head_key(&self, create: bool) -> Result<Option<[u8; 32]>> {
        let p = self.path.with_file_name("audit.key");
        match std::fs::read_to_string(&p) {
            // An empty key is one a writer was killed while making (before the fix above):
            // no head was ever sealed with it.
            Ok(t) if t.trim().is_empty() => {
                if create {
                    let _ = std::fs::remove_file(&p);
                    return self.head_key(true);
                }
                Ok(None)
            }
            Ok(t) => {
                let mut k = [0u8; 32];
                hex::decode_to_slice(t.trim(), &mut k).map_err(|e| {
                    Error::Other(format!(
                        "the audit head key {} is not readable: {e}",
                        p.display()
                    ))
                })?;
                Ok(Some(k))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                // Made whole beside it, then linked into place: a process killed half-way
                // leaves a stray temporary file, never an empty key that would refuse every
                // later append (the crash harness found one).
                let k: [u8; 32] = rand::random();
                let tmp = p.with_file_name(format!("audit.key.{}.tmp", std::process::id()));
                let _ = std::fs::remove_file(&tmp);
                let mut o = std::fs::OpenOptions::new();
                o.write(true).create_new(true);
                std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
                let written = o.open(&tmp).and_then(|mut f| {
                    f.write_all(hex::encode(k).as_bytes())?;
                    f.sync_all()
                });
                let linked = written.and_then(|()| std::fs::hard_link(&tmp, &p));
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => Ok(Some(k)),
                    // Another writer made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.head_key(false),
                    Err(e) => Err(Error::io(format!("creating {}", p.display()), e)),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
        }
    }

    fn head_mac(key: &[u8; 32], seq: u64, hash: &str) -> String {
        blake3::keyed_hash(key, format!("{seq}:{hash}").as_bytes())
            .to_hex()
            .to_string()
    }

    fn write_head(&self, seq: u64, hash: &str) -> Result<()> {
        let Some(key) = self.head_key(true)? else {
            return Ok(());
        };
        let head =
            serde_json::json!({"seq": seq, "hash": hash, "mac": Self::head_mac(&key, seq, hash)});
        let p = self.head_path();
        let tmp = p.with_extension("head.tmp");
        std::fs::write(&tmp, head.to_string())
            .and_then(|()| std::fs::rename(&tmp, &p))
            .map_err(|e| Error::io(format!("writing {}", p.display()), e))
    }

    /// The head recorded beside the log, checked: `(seq, hash)`, or why it cannot be trusted.
    fn read_head(&self) -> Result<Option<std::result::Result<(u64, String), String>>> {
        let text = match std::fs::read_to_string(self.head_path()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading the audit head", e)),
        };
        let v: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return Ok(Some(Err(format!("the head record does not parse: {e}")))),
        };
        let (Some(seq), Some(hash), Some(mac)) =
            (v["seq"].as_u64(), v["hash"].as_str(), v["mac"].as_str())
        else {
            return Ok(Some(Err("the head record lacks seq, hash or mac".into())));
        };
        let Some(key) = self.head_key(false)? else {
            return Ok(Some(Err("the head's key (audit.key) is missing".into())));
        };
        if Self::head_mac(&key, seq, hash) != mac {
            return Ok(Some(Err(
                "the head record does not authenticate (it was written by someone else)".into(),
            )));
        }
        Ok(Some(Ok((seq, hash.to_string()))))
    }

    /// The log, opened for reading and appending (created, mode 0640, when missing).
    fn open(&self) -> Result<std::fs::File> {
        let ctx = |e| Error::io(format!("opening the audit log {}", self.path.display()), e);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(ctx)?;
        }
        let mut o = std::fs::OpenOptions::new();
        o.read(true).append(true).create(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o640);
        o.open(&self.path).map_err(ctx)
    }

    /// The last record of the open log (`None`: empty); a last line that is not a whole
    /// record is an error (a torn write, an edit by hand).
    fn last_record(&self, f: &mut std::fs::File) -> Result<Option<Line>> {
        let line = last_line(f)
            .map_err(|e| Error::io(format!("reading the audit log {}", self.path.display()), e))?;
        line.map(|l| {
            serde_json::from_str::<Line>(&l).map_err(|e| {
                Error::Other(format!(
                    "the audit log {} ends in a line that is not an audit record ({e}): run `keepsake audit verify`, then move the damaged log aside",
                    self.path.display()
                ))
            })
        })
        .transpose()
    }

    /// Append `entry` as the next line of the chain; returns its sequence number. A write that
    /// fails half-way is cut back off, so a full disk never leaves a torn line behind.
    pub fn append(&self, entry: &Entry) -> Result<u64> {
        let ctx = |e| Error::io(format!("writing the audit log {}", self.path.display()), e);
        let mut f = self.open()?;
        f.lock().map_err(ctx)?;
        let last = self.last_record(&mut f)?;
        self.check_not_rewound(last.as_ref())?;
        let (seq, prev) = match last {
            None => (1, GENESIS.to_string()),
            Some(last) => (last.seq + 1, last.hash),
        };
        #[derive(Serialize)]
        struct Body<'a> {
            seq: u64,
            time: DateTime<Utc>,
            #[serde(flatten)]
            entry: &'a Entry,
            prev: &'a str,
        }
        let body = serde_json::to_string(&Body {
            seq,
            time: Utc::now(),
            entry,
            prev: &prev,
        })
        .map_err(|e| Error::Other(e.to_string()))?;
        let hash = digest(&prev, &body);
        let line = format!("{}{HASH_FIELD}{hash}\"}}\n", &body[..body.len() - 1]);
        let before = f.seek(SeekFrom::End(0)).map_err(ctx)?;
        if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.sync_data()) {
            let _ = f.set_len(before).and_then(|()| f.sync_data());
            return Err(ctx(e));
        }
        // The head, still under the lock: where the chain ends, so that lines cut from its end
        // are noticed (`verify`), and in the journal too.
        if let Err(e) = self.write_head(seq, &hash) {
            tracing::warn!("could not record the audit log's head: {e}");
        }
        tracing::info!(target: "keepsake::audit", "audit head: line {seq}, hash {hash}");
        Ok(seq)
    }

    /// Every line (oldest first), optionally only those at or after `since`. Lines that do
    /// not parse are skipped (`verify` names them).
    pub fn read(&self, since: Option<DateTime<Utc>>) -> Result<Vec<Line>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => {
                return Err(Error::io(
                    format!("reading the audit log {}", self.path.display()),
                    e,
                ))
            }
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<Line>(l).ok())
            .filter(|l| since.is_none_or(|s| l.time >= s))
            .collect())
    }

    /// Check the chain: `Ok(n)` with the number of lines, or the first broken line (1-based)
    /// and what is wrong with it.
    pub fn verify(&self) -> Result<std::result::Result<u64, (u64, String)>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ok(0)),
            Err(e) => {
                return Err(Error::io(
                    format!("reading the audit log {}", self.path.display()),
                    e,
                ))
            }
        };
        let chain = verify_text(&text);
        let Ok(n) = chain else { return Ok(chain) };
        // The chain is whole as far as it goes: does it go as far as its head says?
        let last_hash = text
            .lines()
            .last()
            .and_then(|l| serde_json::from_str::<Line>(l).ok())
            .map(|l| l.hash);
        Ok(match self.read_head()? {
            None => Ok(n),
            Some(Err(why)) => Err((n, format!("the log's head anchor cannot be trusted: {why}"))),
            Some(Ok((seq, _))) if seq > n => Err((
                n + 1,
                format!(
                    "the log was rewound: it ends at line {n}, but its head records line {seq}: {} line(s) were removed from its end",
                    seq - n
                ),
            )),
            Some(Ok((seq, hash))) if seq == n && last_hash.as_deref() != Some(hash.as_str()) => Err((
                n,
                "the last line is not the one the log's head records (the end of the log was replaced)".into(),
            )),
            Some(Ok(_)) => Ok(n),
        })
    }
}

/// The chain check over the log's text.
pub fn verify_text(text: &str) -> std::result::Result<u64, (u64, String)> {
    let mut prev = GENESIS.to_string();
    let mut n = 0u64;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let no = i as u64 + 1;
        let Some(l) = raw.strip_suffix('\n') else {
            return Err((no, "the line is cut short (no newline at its end)".into()));
        };
        let line: Line =
            serde_json::from_str(l).map_err(|e| (no, format!("not an audit record: {e}")))?;
        if line.seq != no {
            return Err((no, format!("sequence {} where {no} was expected", line.seq)));
        }
        if line.prev != prev {
            return Err((
                no,
                "its previous hash does not match the line before it (a line was removed, reordered or changed)".into(),
            ));
        }
        let Some(cut) = l.rfind(HASH_FIELD) else {
            return Err((no, "no hash field at the end of the line".into()));
        };
        let body = format!("{}}}", &l[..cut]);
        if digest(&prev, &body) != line.hash || !l.ends_with(&format!("{}\"}}", line.hash)) {
            return Err((
                no,
                "its hash does not match its content (the line was changed)".into(),
            ));
        }
        prev = line.hash;
        n = no;
    }
    Ok(n)
}

/// The last non-empty line of `f` (read backwards in blocks).
fn last_line(f: &mut std::fs::File) -> std::io::Result<Option<String>> {
    let len = f.seek(SeekFrom::End(0))?;
    let mut tail = Vec::new();
    let mut pos = len;
    loop {
        let step = (64 * 1024u64).min(pos.max(1));
        let start = pos.saturating_sub(step);
        let mut buf = vec![0; (pos - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf)?;
        buf.extend_from_slice(&tail);
        tail = buf;
        pos = start;
        let trimmed = tail.strip_suffix(b"\n").unwrap_or(&tail);
        if let Some(i) = trimmed.iter().rposition(|b| *b == b'\n') {
            return Ok(Some(
                String::from_utf8_lossy(&trimmed[i + 1..]).into_owned(),
            ));
        }
        if pos == 0 {
            return Ok((!trimmed.is_empty()).then(|| String::from_utf8_lossy(trimmed).into_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str) -> Entry {
        Entry {
            actor: "alice".into(),
            role: "admin".into(),
            via: "socket".into(),
            action: action.into(),
            target: Some("wedsync".into()),
            params: serde_json::json!({"type": "full"}),
            outcome: "accepted".into(),
            code: 202,
            job: Some("j1".into()),
            reason: None,
        }
    }

    #[test]
    fn chain_verifies_and_names_the_first_changed_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path());
        for a in ["backup", "verify", "delete", "prune"] {
            log.append(&entry(a)).unwrap();
        }
        assert_eq!(log.verify().unwrap(), Ok(4));
        let lines = log.read(None).unwrap();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[2].entry.action, "delete");
        assert_eq!(lines[0].prev, GENESIS);
        assert_eq!(lines[1].prev, lines[0].hash);

        let text = std::fs::read_to_string(log.path()).unwrap();
        // Change one field of line 3.
        let changed = text.replacen("\"delete\"", "\"backup\"", 1);
        assert_eq!(verify_text(&changed).unwrap_err().0, 3);
        // Remove line 2.
        let ls: Vec<&str> = text.split_inclusive('\n').collect();
        let removed = [ls[0], ls[2], ls[3]].concat();
        assert_eq!(verify_text(&removed).unwrap_err().0, 2);
        // Cut the last line short.
        assert_eq!(verify_text(&text[..text.len() - 5]).unwrap_err().0, 4);
    }

    /// Regression (issue 26, item 8): removing the newest lines left a chain that verified as
    /// intact. The head recorded beside the log (authenticated with a key the log does not
    /// hold) names a rewound log; a forged head is named too.
    #[test]
    fn a_log_cut_short_at_its_end_is_named_rewound() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path());
        for a in ["backup", "verify", "delete", "prune", "restore"] {
            log.append(&entry(a)).unwrap();
        }
        assert_eq!(log.verify().unwrap(), Ok(5));
        let text = std::fs::read_to_string(log.path()).unwrap();
        let kept: String = text.split_inclusive('\n').take(3).collect();
        std::fs::write(log.path(), &kept).unwrap();
        let (line, why) = log.verify().unwrap().unwrap_err();
        assert_eq!(line, 4);
        assert!(
            why.contains("rewound") && why.contains("2 line(s)"),
            "{why}"
        );
        // A head rewritten to match, without the key: does not authenticate.
        std::fs::write(
            dir.path().join("audit.head"),
            r#"{"seq": 3, "hash": "x", "mac": "y"}"#,
        )
        .unwrap();
        let (_, why) = log.verify().unwrap().unwrap_err();
        assert!(why.contains("does not authenticate"), "{why}");
        // Nothing is appended to a log cut short (that would hide the cut).
        let kept5: String = text.split_inclusive('\n').take(5).collect();
        std::fs::write(log.path(), &kept5).unwrap();
        log.append(&entry("backup")).unwrap();
        std::fs::write(log.path(), &kept).unwrap();
        let e = log.append(&entry("backup")).unwrap_err();
        assert!(e.to_string().contains("cut short"), "{e}");
        assert!(log.check_writable().is_err());
    }

    #[test]
    fn concurrent_appenders_keep_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let log = AuditLog::new(dir.path());
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        log.append(&entry("backup")).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(AuditLog::new(dir.path()).verify().unwrap(), Ok(100));
    }
}
