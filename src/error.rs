//! Typed errors of the library and the exit code each maps to (docs/architecture.md, "Errors
//! and exit codes").
//!
//! Invariant: no message built here carries a password, an identity secret or a full
//! connection string. Connection targets are shown as `host:port/dbname` only.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, grouped by what the user has to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is wrong; `file:line: key: message`.
    #[error("{file}:{line}: {key}: {message}", file = .file.display())]
    Config {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    /// The configuration could not be found or read at all.
    #[error("{0}")]
    ConfigMissing(String),
    /// The command line asks for something that cannot be done as asked.
    #[error("{0}")]
    Usage(String),
    /// One field of a request is wrong: `field` is the request's own name for it (`confirm`,
    /// `target`, `jobs`), never a face's (a flag, a query parameter, a dialog); each face
    /// words it its own way. The message may name other fields of the request ([`field_ref`]):
    /// a face renders them as it names them ([`render_fields`]); `Display` gives plain words.
    #[error("{field}: {}", plain_fields(.message))]
    Field {
        field: &'static str,
        message: String,
    },
    /// What was asked for does not exist (no such backup, job or source).
    #[error("{0}")]
    NotFound(String),
    /// A rule refuses the request as asked (the newest restore-verified backup, for one).
    #[error("{0}")]
    Conflict(String),
    /// Keys: unreadable identity, no identity able to open the repository, bad recipient.
    #[error("{0}")]
    Key(String),
    /// The repository is missing, of a newer format, or damaged in a way that stops the operation.
    #[error("{0}")]
    Repository(String),
    /// Verification found damage or a mismatch (exit 3).
    #[error("{0}")]
    Damage(String),
    /// PostgreSQL side: connection, tools, pg_dump / pg_restore failures.
    #[error("{0}")]
    Postgres(String),
    /// Object store I/O.
    #[error("storage: {0}")]
    Storage(String),
    /// The operation was cancelled (Ctrl-C, SIGTERM); nothing half-written is visible.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Exit code for this error (docs/architecture.md, "Errors and exit codes"): 1 failed,
    /// 2 usage/config, 3 damage.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. }
            | Error::ConfigMissing(_)
            | Error::Usage(_)
            | Error::Field { .. }
            | Error::NotFound(_)
            | Error::Conflict(_)
            | Error::Key(_) => 2,
            Error::Damage(_) => 3,
            _ => 1,
        }
    }

    /// A stable name for the kind of error (the control API's error codes and job outcomes).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config { .. } | Error::ConfigMissing(_) => "config",
            Error::Usage(_) | Error::Field { .. } => "invalid",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Key(_) => "key",
            Error::Repository(_) => "repository",
            Error::Damage(_) => "damage",
            Error::Postgres(_) => "postgres",
            Error::Storage(_) => "storage",
            Error::Cancelled(_) => "cancelled",
            Error::Other(_) => "failed",
        }
    }

    /// The request field this error is about, when it is about one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Error::Field { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The message without the field's name (for a face that shows it beside the field).
    /// References to other fields are left for the face to render ([`render_fields`]).
    pub fn message(&self) -> String {
        match self {
            Error::Field { message, .. } => message.clone(),
            e => e.to_string(),
        }
    }

    pub(crate) fn io(context: impl std::fmt::Display, err: std::io::Error) -> Self {
        Error::Other(format!("{context}: {err}"))
    }
}

/// Opens and closes a [`field_ref`].
const REF_OPEN: char = '\u{27e6}';
const REF_CLOSE: char = '\u{27e7}';

/// A reference, inside an error message, to a field of the request: `⟦create⟧`, or with the
/// value to give it, `⟦confirm=wed⟧`. The engine speaks of its requests' fields; each face
/// renders the reference as it names that field (`--confirm wed` on the command line,
/// `"confirm": "wed"` in the control API, the dialog's words in the console).
pub fn field_ref(name: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{REF_OPEN}{name}={v}{REF_CLOSE}"),
        None => format!("{REF_OPEN}{name}{REF_CLOSE}"),
    }
}

/// `message` with every [`field_ref`] replaced by what `name` makes of (field, value).
pub fn render_fields(message: &str, name: impl Fn(&str, Option<&str>) -> String) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(REF_OPEN) {
        out.push_str(&rest[..i]);
        let after = &rest[i + REF_OPEN.len_utf8()..];
        let Some(j) = after.find(REF_CLOSE) else {
            out.push_str(&rest[i..]);
            return out;
        };
        let inner = &after[..j];
        let (field, value) = match inner.split_once('=') {
            Some((f, v)) => (f, Some(v)),
            None => (inner, None),
        };
        out.push_str(&name(field, value));
        rest = &after[j + REF_CLOSE.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// Plain words for the field references of `message`, for records every face reads (the job
/// history, the audit log, alerts): `confirm "wed"`, `create`.
pub fn plain_fields(message: &str) -> String {
    render_fields(message, |field, value| match value {
        Some(v) => format!("{field} \"{v}\""),
        None => field.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_references_are_rendered_by_each_face_and_plain_elsewhere() {
        let m = format!(
            "is needed: restore with {} or replace with {} {}",
            field_ref("create", None),
            field_ref("clean", None),
            field_ref("confirm", Some("wed"))
        );
        let flags = render_fields(&m, |f, v| match v {
            Some(v) => format!("--{f} {v}"),
            None => format!("--{f}"),
        });
        assert_eq!(
            flags,
            "is needed: restore with --create or replace with --clean --confirm wed"
        );
        assert_eq!(
            plain_fields(&m),
            "is needed: restore with create or replace with clean confirm \"wed\""
        );
        let e = Error::Field {
            field: "clean",
            message: m,
        };
        assert!(!e.to_string().contains(REF_OPEN), "{e}");
        // A stray bracket is left as it is.
        assert_eq!(plain_fields("a \u{27e6}b"), "a \u{27e6}b");
    }
}
