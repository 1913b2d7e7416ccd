//! Which backup a person meant: the one rule every face uses to turn what was typed or
//! clicked into a backup id.
//!
//! Invariant: a query names a backup only when exactly one id matches it, by one of three
//! forms: the full id (`20261207T153526Z-b527f3`), a prefix of it of at least
//! [`MIN_PREFIX`] characters (`20261207T1535`), or the short form the console and `list`
//! show — the id's random suffix after the last `-` (`b527f3`). An ambiguous query is never
//! resolved to "the first" one.

/// A prefix shorter than this is refused as ambiguous in spirit even when one id matches:
/// `2` naming "the" backup today names another tomorrow.
pub const MIN_PREFIX: usize = 4;

/// Why a query names no single backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// No id matches.
    NotFound,
    /// This many ids match.
    Ambiguous(usize),
    /// Shorter than [`MIN_PREFIX`] and not a whole id or suffix.
    TooShort,
}

impl IdError {
    /// The reason in words, without the query (faces add it in their own way).
    pub fn words(&self) -> String {
        match self {
            IdError::NotFound => "matches no backup".into(),
            IdError::Ambiguous(n) => format!("matches {n} backups: give more of the id"),
            IdError::TooShort => format!(
                "is too short: give the whole id, its last part after the `-`, or at least \
                 {MIN_PREFIX} characters of its start"
            ),
        }
    }
}

/// The short form shown on screens: the random suffix after the last `-`.
pub fn short(id: &str) -> &str {
    id.rsplit('-').next().unwrap_or(id)
}

/// The id among `ids` that `query` names (see the module invariant).
pub fn resolve<'a, I>(ids: I, query: &str) -> Result<&'a str, IdError>
where
    I: IntoIterator<Item = &'a str>,
{
    let query = query.trim();
    let ids: Vec<&'a str> = ids.into_iter().collect();
    if let Some(id) = ids.iter().find(|i| **i == query) {
        return Ok(id);
    }
    if query.is_empty() {
        return Err(IdError::TooShort);
    }
    let mut hits: Vec<&'a str> = ids
        .iter()
        .copied()
        .filter(|i| (query.len() >= MIN_PREFIX && i.starts_with(query)) || short(i) == query)
        .collect();
    hits.dedup();
    match hits.as_slice() {
        [one] => Ok(one),
        [] if query.len() < MIN_PREFIX => Err(IdError::TooShort),
        [] => Err(IdError::NotFound),
        many => Err(IdError::Ambiguous(many.len())),
    }
}

/// What of a typed id may appear in a message: short and printable (a query can be anything).
pub fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: [&str; 3] = [
        "20261207T153526Z-b527f3",
        "20261207T153600Z-8f0c06",
        "20261208T010000Z-aa11bb",
    ];

    #[test]
    fn every_form_a_face_shows_names_one_backup() {
        assert_eq!(resolve(IDS, IDS[0]), Ok(IDS[0]));
        assert_eq!(resolve(IDS, "b527f3"), Ok(IDS[0]));
        assert_eq!(resolve(IDS, " 8f0c06 "), Ok(IDS[1]));
        assert_eq!(resolve(IDS, "20261208"), Ok(IDS[2]));
        assert_eq!(resolve(IDS, "20261207T1535"), Ok(IDS[0]));
    }

    #[test]
    fn ambiguity_and_absence_are_refused_with_the_reason() {
        assert_eq!(resolve(IDS, "20261207"), Err(IdError::Ambiguous(2)));
        assert_eq!(resolve(IDS, "ffffff"), Err(IdError::NotFound));
        assert_eq!(resolve(IDS, "b5"), Err(IdError::TooShort));
        assert_eq!(resolve(IDS, ""), Err(IdError::TooShort));
        assert_eq!(resolve([], "b527f3"), Err(IdError::NotFound));
        assert!(IdError::TooShort.words().contains("after the `-`"));
    }
}
