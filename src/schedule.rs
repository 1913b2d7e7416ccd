//! Backup schedules: per source and backup type, a crontab expression (5 fields, or 6 with
//! leading seconds) in a time zone, evaluated with `croner`.
//!
//! Why croner rather than the `cron` crate: `cron` wants 6/7 fields (no standard 5-field
//! crontab) and evaluates in a fixed offset, so it cannot follow a zone's DST rules. croner
//! parses both forms and walks local wall-clock time through `chrono-tz`: a time skipped by
//! spring-forward runs at the first valid instant after the gap (never lost), and a fixed
//! time that occurs twice at fall-back runs once, at its first occurrence (never doubled). A
//! repeating pattern (`0 * * * *`, `*/15 …`) runs through the repeated hour twice, as real
//! time passes: every hour means every hour, not every wall-clock label (croner 4).
//!
//! Invariant of [`SourceSchedule::due`]: every scheduled instant in `(since, now]` is reported
//! at most once, and a window that missed several (downtime) yields one catch-up run per type,
//! the latest. When types fall due at the same instant, the strongest wins
//! (full > differential > incremental).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::model::BackupType;

#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: BackupType,
    pub pattern: String,
    cron: Cron,
}

#[derive(Debug, Clone)]
pub struct SourceSchedule {
    pub timezone: Tz,
    pub entries: Vec<Entry>,
}

/// Parse one expression (5 or 6 fields).
pub fn parse_cron(pattern: &str) -> Result<Cron, String> {
    CronParser::builder()
        // 5 fields, or 6 with leading seconds; never a 7th (year) field.
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(pattern)
        .map_err(|e| format!("\"{pattern}\" is not a cron expression ({e}): use 5 fields (\"0 3 * * 0\") or 6 with leading seconds"))
}

/// Parse an IANA time zone name.
pub fn parse_tz(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("\"{name}\" is not a time zone: use an IANA name such as Europe/London or UTC")
    })
}

/// One cron expression in a time zone, with the same DST rules as backup schedules (used by
/// `[verification] schedule`).
#[derive(Debug, Clone)]
pub struct ZonedCron {
    inner: SourceSchedule,
}

impl ZonedCron {
    pub fn new(pattern: &str, timezone: Tz) -> Result<Self, String> {
        Ok(ZonedCron {
            inner: SourceSchedule::new(timezone, &[(BackupType::Full, pattern.to_string())])?,
        })
    }

    /// The latest scheduled instant in `(since, now]`, if any (missed ones coalesce).
    pub fn due(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.inner.due(since, now).into_iter().map(|d| d.1).max()
    }

    /// The next instant after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.inner.next_runs(t).first().map(|d| d.1)
    }

    pub fn pattern(&self) -> &str {
        &self.inner.entries[0].pattern
    }
}

fn strength(k: BackupType) -> u8 {
    match k {
        BackupType::Full => 3,
        BackupType::Differential => 2,
        BackupType::Incremental => 1,
    }
}

impl SourceSchedule {
    pub fn new(timezone: Tz, entries: &[(BackupType, String)]) -> Result<Self, String> {
        let entries = entries
            .iter()
            .map(|(kind, p)| {
                Ok(Entry {
                    kind: *kind,
                    pattern: p.clone(),
                    cron: parse_cron(p)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(SourceSchedule { timezone, entries })
    }

    fn next_after(&self, e: &Entry, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut start = t;
        for _ in 0..240 {
            let n = e
                .cron
                .find_next_occurrence(&start.with_timezone(&self.timezone), false)
                .ok()?
                .with_timezone(&Utc);
            if n > t {
                return Some(n);
            }
            // Inside a repeated (fall-back) hour croner maps the wall-clock time to its first,
            // already past, occurrence: that instant has run; look past the repeated times.
            start += chrono::Duration::minutes(1);
        }
        None
    }

    /// The next run of each type after `t`, soonest first.
    pub fn next_runs(&self, t: DateTime<Utc>) -> Vec<(BackupType, DateTime<Utc>)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .filter_map(|e| self.next_after(e, t).map(|n| (e.kind, n)))
            .collect();
        v.sort_by_key(|x| x.1);
        v
    }

    /// Runs due in `(since, now]`: per type at most one (the latest missed instant); at one
    /// instant only the strongest type.
    pub fn due(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<(BackupType, DateTime<Utc>)> {
        let mut latest: Vec<(BackupType, DateTime<Utc>)> = Vec::new();
        for e in &self.entries {
            let mut t = since;
            let mut last = None;
            // Bounded walk: a schedule every second over a long outage must not spin forever.
            for _ in 0..100_000 {
                match self.next_after(e, t) {
                    Some(n) if n <= now => {
                        last = Some(n);
                        t = n;
                    }
                    _ => break,
                }
            }
            if let Some(n) = last {
                latest.push((e.kind, n));
            }
        }
        latest.sort_by_key(|x| (x.1, std::cmp::Reverse(strength(x.0))));
        let mut out: Vec<(BackupType, DateTime<Utc>)> = Vec::new();
        for (k, t) in latest {
            if let Some(prev) = out.iter_mut().find(|(_, pt)| *pt == t) {
                if strength(k) > strength(prev.0) {
                    prev.0 = k;
                }
            } else {
                out.push((k, t));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .unwrap_or_default()
    }

    /// Step a fake clock through `[from, to)` one minute at a time, as a daemon polling every
    /// minute would, and collect every run it would start.
    fn simulate(
        s: &SourceSchedule,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(BackupType, DateTime<Utc>)> {
        let mut runs = Vec::new();
        let mut last = from;
        let mut now = from;
        while now < to {
            now += chrono::Duration::minutes(1);
            runs.extend(s.due(last, now));
            last = now;
        }
        runs
    }

    fn daily(tz: &str, pattern: &str) -> SourceSchedule {
        SourceSchedule::new(
            parse_tz(tz).expect("tz"),
            &[(BackupType::Full, pattern.to_string())],
        )
        .expect("schedule")
    }

    #[test]
    fn london_spring_forward_runs_once_after_the_gap() {
        // 2026-03-29: 01:00 GMT jumps to 02:00 BST; 01:30 does not exist that day.
        let s = daily("Europe/London", "30 1 * * *");
        let runs = simulate(&s, utc(2026, 3, 28, 12, 0), utc(2026, 3, 29, 12, 0));
        assert_eq!(
            runs,
            vec![(BackupType::Full, utc(2026, 3, 29, 1, 0))],
            "{runs:?}"
        );
    }

    #[test]
    fn london_fall_back_runs_once_in_the_repeated_hour() {
        // 2026-10-25: 02:00 BST falls back to 01:00 GMT; 01:30 happens twice.
        let s = daily("Europe/London", "30 1 * * *");
        let runs = simulate(&s, utc(2026, 10, 24, 12, 0), utc(2026, 10, 25, 12, 0));
        assert_eq!(
            runs,
            vec![(BackupType::Full, utc(2026, 10, 25, 0, 30))],
            "{runs:?}"
        );
    }

    /// An hourly schedule runs every real hour through the fall-back: 01:00 BST (00:00 UTC),
    /// 01:00 GMT (01:00 UTC) and 02:00 GMT (02:00 UTC), none skipped and none twice.
    #[test]
    fn an_hourly_schedule_runs_every_real_hour_through_the_fall_back() {
        let s = daily("Europe/London", "0 * * * *");
        let runs = simulate(&s, utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 2, 30));
        let at: Vec<_> = runs.iter().map(|(_, t)| *t).collect();
        assert_eq!(
            at,
            vec![
                utc(2026, 10, 25, 0, 0),
                utc(2026, 10, 25, 1, 0),
                utc(2026, 10, 25, 2, 0)
            ],
            "{runs:?}"
        );
    }

    #[test]
    fn new_york_spring_forward_and_fall_back() {
        // 2026-03-08: 02:00 EST → 03:00 EDT (02:30 missing); 2026-11-01: 02:00 EDT → 01:00 EST.
        let s = daily("America/New_York", "30 2 * * *");
        let spring = simulate(&s, utc(2026, 3, 7, 12, 0), utc(2026, 3, 8, 12, 0));
        assert_eq!(
            spring,
            vec![(BackupType::Full, utc(2026, 3, 8, 7, 0))],
            "{spring:?}"
        );
        let s = daily("America/New_York", "30 1 * * *");
        let fall = simulate(&s, utc(2026, 10, 31, 12, 0), utc(2026, 11, 1, 12, 0));
        assert_eq!(
            fall,
            vec![(BackupType::Full, utc(2026, 11, 1, 5, 30))],
            "{fall:?}"
        );
    }

    #[test]
    fn downtime_yields_one_catch_up_per_type_and_the_strongest_wins() {
        let s = SourceSchedule::new(
            parse_tz("UTC").expect("tz"),
            &[
                (BackupType::Full, "0 3 * * 0".into()),
                (BackupType::Differential, "0 3 * * 1-6".into()),
                (BackupType::Incremental, "0 * * * *".into()),
            ],
        )
        .expect("schedule");
        // Down for three days (Wed 2026-11-25 → Sat 2026-11-28 10:20): one run of each type.
        let due = s.due(utc(2026, 11, 25, 0, 0), utc(2026, 11, 28, 10, 20));
        assert_eq!(
            due,
            vec![
                (BackupType::Differential, utc(2026, 11, 28, 3, 0)),
                (BackupType::Incremental, utc(2026, 11, 28, 10, 0))
            ]
        );
        // Sunday 03:00: full and hourly incremental coincide → only the full.
        let due = s.due(utc(2026, 11, 29, 2, 59), utc(2026, 11, 29, 3, 0));
        assert_eq!(due, vec![(BackupType::Full, utc(2026, 11, 29, 3, 0))]);
        // Six fields: every 5 seconds.
        let fast = SourceSchedule::new(
            parse_tz("UTC").expect("tz"),
            &[(BackupType::Incremental, "*/5 * * * * *".into())],
        )
        .expect("s");
        assert_eq!(
            fast.next_runs(utc(2026, 1, 1, 0, 0))[0].1,
            utc(2026, 1, 1, 0, 0) + chrono::Duration::seconds(5)
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("every day").is_err());
        assert!(parse_tz("Mars/Olympus").is_err());
    }
}
