//! Retention: which backups a policy keeps, as a pure function that explains itself.
//!
//! Invariants (each is a proptest property in the tests below):
//! - the newest backup of each source is always kept, and so is the newest one not found
//!   damaged;
//! - the newest backup proven at `restore` level is always kept;
//! - at least `min_verified` backups proven at `data` level or better are kept (if there are);
//! - a backup whose latest verification found damage never fills a `keep_*` slot: it
//!   protects nothing;
//! - damage alone never empties a source's history: when every backup of a source is found
//!   damaged, none is forgotten;
//! - a full that a kept differential was taken against is kept;
//! - with no rule configured at all, everything is kept.
//!
//! Buckets (hourly … yearly) follow restic's semantics in UTC: the newest eligible backup of
//! each of the N most recent periods that have one.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::Serialize;

use crate::core::format::BackupType;

pub use crate::model::RetentionPolicy;

/// What the policy needs to know about one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub source: String,
    pub kind: BackupType,
    pub started_at: DateTime<Utc>,
    /// `none`, `structure`, `data`, `restore` or `failed` (see `verify::proven`).
    pub verified: &'static str,
    pub based_on: Option<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Decision {
    pub id: String,
    pub source: String,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// The period a backup falls in, as a sortable label.
type BucketKey = fn(&DateTime<Utc>) -> String;

/// Decide for every candidate. Output is sorted by source, newest first.
pub fn plan(
    policy: &RetentionPolicy,
    candidates: &[Candidate],
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let mut by_source: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in candidates {
        by_source.entry(c.source.as_str()).or_default().push(c);
    }
    let mut out = Vec::new();
    for (_, mut cs) in by_source {
        cs.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); cs.len()];
        // A backup whose verification records cannot all be read is neither counted in a
        // slot (it may be the damaged one) nor forgotten (it may be the good one).
        let eligible = |c: &Candidate| !matches!(c.verified, "failed" | "unknown");
        for (i, c) in cs.iter().enumerate() {
            if c.verified == "unknown" {
                reasons[i].push(
                    "verification status unknown (a record of it cannot be read): kept until it can be"
                        .into(),
                );
            }
        }

        if !policy.has_rules() {
            for r in reasons.iter_mut() {
                r.push("no retention rule configured".into());
            }
        }
        // Damage alone never empties a source's history (issue 28, item 5): when every backup
        // of it is found damaged (one bad pack many of them share, say), each may still
        // restore most of its tables, and one of the findings may be wrong.
        if cs.len() > 1 && cs.iter().all(|c| c.verified == "failed") {
            for r in reasons.iter_mut() {
                r.push(
                    "every backup of the source is found damaged: none is forgotten on damage alone"
                        .into(),
                );
            }
        }
        if let Some(days) = policy.days {
            // Saturating: a huge `days` keeps everything, it never overflows the clock.
            let since = now
                .checked_sub_signed(Duration::days(i64::from(days)))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            for (i, c) in cs.iter().enumerate() {
                if c.started_at >= since && eligible(c) {
                    reasons[i].push(format!("within {days} days"));
                }
            }
        }
        if let Some(n) = policy.keep_last {
            for (k, i) in (0..cs.len())
                .filter(|i| eligible(cs[*i]))
                .take(n as usize)
                .enumerate()
            {
                reasons[i].push(format!("keep_last {} of {n}", k + 1));
            }
        }
        let buckets: [(&str, Option<u32>, BucketKey); 5] = [
            ("hourly", policy.keep_hourly, |t| {
                t.format("%Y-%m-%d %H:00").to_string()
            }),
            ("daily", policy.keep_daily, |t| {
                t.format("%Y-%m-%d").to_string()
            }),
            ("weekly", policy.keep_weekly, |t| {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }),
            ("monthly", policy.keep_monthly, |t| {
                t.format("%Y-%m").to_string()
            }),
            ("yearly", policy.keep_yearly, |t| t.format("%Y").to_string()),
        ];
        for (name, n, key) in buckets {
            let Some(n) = n else { continue };
            let mut seen = BTreeSet::new();
            for (i, c) in cs.iter().enumerate() {
                if seen.len() >= n as usize {
                    break;
                }
                if !eligible(c) {
                    continue;
                }
                let k = key(&c.started_at);
                if seen.insert(k.clone()) {
                    reasons[i].push(format!("{name} {k}"));
                }
            }
        }
        // Guards.
        // The newest backup is never forgotten (even one found damaged: its verification may
        // be wrong, and it may be all there is); nor is the newest undamaged one.
        if !cs.is_empty() {
            reasons[0].push("newest backup of the source".into());
        }
        if let Some(i) = (1..cs.len()).find(|i| eligible(cs[*i])) {
            if !eligible(cs[0]) {
                reasons[i].push("newest backup not found damaged".into());
            }
        }
        if let Some(i) = cs.iter().position(|c| c.verified == "restore") {
            reasons[i].push("newest backup proven at restore level".into());
        }
        if let Some(m) = policy.min_verified {
            let verified: Vec<usize> = (0..cs.len())
                .filter(|i| matches!(cs[*i].verified, "data" | "restore"))
                .take(m as usize)
                .collect();
            for (k, i) in verified.into_iter().enumerate() {
                reasons[i].push(format!("min_verified {} of {m}", k + 1));
            }
        }
        // A kept differential keeps the full it was taken against.
        let kept_ids: Vec<(usize, Option<String>)> = (0..cs.len())
            .filter(|i| !reasons[*i].is_empty() && cs[*i].kind == BackupType::Differential)
            .map(|i| (i, cs[i].based_on.clone()))
            .collect();
        for (i, base) in kept_ids {
            if let Some(b) = base {
                if let Some(j) = cs.iter().position(|c| c.id == b) {
                    let why = format!("full of kept differential {}", cs[i].id);
                    reasons[j].push(why);
                }
            }
        }
        for (i, c) in cs.iter().enumerate() {
            let keep = !reasons[i].is_empty();
            let mut r = std::mem::take(&mut reasons[i]);
            if !keep {
                r.push(if c.verified == "failed" {
                    "its latest verification found damage, so it counts toward no rule".into()
                } else {
                    "matched no rule".into()
                });
            }
            out.push(Decision {
                id: c.id.clone(),
                source: c.source.clone(),
                keep,
                reasons: r,
            });
        }
    }
    out
}

/// Seconds-precision helper for tests and docs.
pub fn at(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(y, mo, d, h, 0, 0)
        .single()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn history() -> Vec<Candidate> {
        // Four weeks of nightly backups: full on Sundays, differential otherwise; one hourly
        // incremental on the last day; the last restore-verified backup is ten days old; one
        // backup found damaged.
        let mut v = Vec::new();
        let start = at(2026, 10, 29, 3);
        let mut last_full = String::new();
        for d in 0..28 {
            let t = start + Duration::days(d);
            let id = format!("n{d:02}");
            let kind = if t.weekday() == chrono::Weekday::Sun {
                BackupType::Full
            } else {
                BackupType::Differential
            };
            if kind == BackupType::Full {
                last_full = id.clone();
            }
            let verified = match d {
                17 => "restore",
                20 => "failed",
                _ if d % 3 == 0 => "data",
                _ => "none",
            };
            v.push(Candidate {
                id: id.clone(),
                source: "wedsync".into(),
                kind,
                started_at: t,
                verified,
                based_on: (kind == BackupType::Differential && !last_full.is_empty())
                    .then(|| last_full.clone()),
            });
        }
        for h in 4..10 {
            v.push(Candidate {
                id: format!("h{h:02}"),
                source: "wedsync".into(),
                kind: BackupType::Incremental,
                started_at: at(2026, 11, 25, h),
                verified: "none",
                based_on: None,
            });
        }
        v
    }

    fn render(plan: &[Decision]) -> String {
        plan.iter()
            .map(|d| {
                format!(
                    "{} {} {}",
                    if d.keep { "keep  " } else { "forget" },
                    d.id,
                    d.reasons.join("; ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn realistic_policy_plan() {
        let policy = RetentionPolicy {
            keep_last: Some(3),
            keep_daily: Some(7),
            keep_weekly: Some(4),
            min_verified: Some(2),
            ..Default::default()
        };
        insta::assert_snapshot!(render(&plan(&policy, &history(), at(2026, 11, 25, 12))));
    }

    /// Regression (issue 28, item 5): one bad pack shared by a source's whole history marked
    /// every backup failed, and the next prune kept only the newest. When every backup of a
    /// source is found damaged, none is forgotten on damage alone; another source is not
    /// affected.
    #[test]
    fn damage_alone_never_empties_a_sources_history() {
        let policy = RetentionPolicy {
            keep_last: Some(1),
            ..Default::default()
        };
        let mut cands: Vec<Candidate> = (0..4)
            .map(|d| Candidate {
                id: format!("b{d}"),
                source: "s".into(),
                kind: BackupType::Full,
                started_at: at(2026, 1, 1 + d, 3),
                verified: "failed",
                based_on: None,
            })
            .collect();
        let decisions = plan(&policy, &cands, at(2026, 2, 1, 0));
        assert!(decisions.iter().all(|d| d.keep), "{decisions:?}");
        // With one good backup, the damaged ones fill no slot again.
        cands[1].verified = "data";
        let decisions = plan(&policy, &cands, at(2026, 2, 1, 0));
        assert_eq!(
            decisions.iter().filter(|d| d.keep).count(),
            2,
            "the newest and the newest undamaged: {decisions:?}"
        );
    }

    /// A period longer than the clock can subtract keeps everything instead of panicking.
    #[test]
    fn huge_days_keep_everything_without_panicking() {
        let policy = RetentionPolicy {
            days: Some(u32::MAX),
            ..Default::default()
        };
        let cands: Vec<Candidate> = (0..3)
            .map(|d| Candidate {
                id: format!("b{d}"),
                source: "s".into(),
                kind: BackupType::Full,
                started_at: at(2026, 1, 1 + d, 3),
                verified: "data",
                based_on: None,
            })
            .collect();
        let decisions = plan(&policy, &cands, at(2026, 2, 1, 0));
        assert!(decisions.iter().all(|d| d.keep), "{decisions:?}");
    }

    /// A backup whose status is unknown (a verification record of it cannot be read) is kept
    /// and fills no slot: the proven one before it keeps its place.
    #[test]
    fn an_unknown_backup_is_kept_and_fills_no_slot() {
        let policy = RetentionPolicy {
            keep_last: Some(1),
            ..Default::default()
        };
        let cands = vec![
            Candidate {
                id: "older".into(),
                source: "s".into(),
                kind: BackupType::Full,
                started_at: at(2026, 1, 1, 3),
                verified: "data",
                based_on: None,
            },
            Candidate {
                id: "newer".into(),
                source: "s".into(),
                kind: BackupType::Full,
                started_at: at(2026, 1, 2, 3),
                verified: "unknown",
                based_on: None,
            },
        ];
        let d = plan(&policy, &cands, at(2026, 2, 1, 0));
        let get = |id: &str| d.iter().find(|x| x.id == id).expect("decided");
        assert!(get("older").keep && get("older").reasons[0].starts_with("keep_last 1"));
        assert!(get("newer").keep, "{d:?}");
        assert!(get("newer").reasons[0].contains("unknown"), "{d:?}");
    }

    #[test]
    fn days_policy_plan() {
        let policy = RetentionPolicy {
            days: Some(5),
            ..Default::default()
        };
        insta::assert_snapshot!(render(&plan(&policy, &history(), at(2026, 11, 25, 12))));
    }

    #[test]
    fn no_rules_keeps_everything() {
        let p = plan(
            &RetentionPolicy::default(),
            &history(),
            at(2026, 11, 25, 12),
        );
        assert!(p.iter().all(|d| d.keep));
    }

    fn arb_candidates() -> impl Strategy<Value = Vec<Candidate>> {
        prop::collection::vec((0u8..3, 0i64..2000, 0u8..5, any::<bool>()), 1..40).prop_map(|raw| {
            let mut v: Vec<Candidate> = Vec::new();
            for (i, (src, hours, ver, diff)) in raw.into_iter().enumerate() {
                let source = format!("s{src}");
                let base = v
                    .iter()
                    .rev()
                    .find(|c| c.source == source && c.kind == BackupType::Full)
                    .map(|c| c.id.clone());
                let kind = if diff && base.is_some() {
                    BackupType::Differential
                } else {
                    BackupType::Full
                };
                v.push(Candidate {
                    id: format!("b{i:03}"),
                    source,
                    kind,
                    started_at: at(2026, 1, 1, 0) + Duration::hours(hours),
                    verified: ["none", "structure", "data", "restore", "failed"][ver as usize],
                    based_on: if kind == BackupType::Differential {
                        base
                    } else {
                        None
                    },
                });
            }
            v
        })
    }

    fn arb_policy() -> impl Strategy<Value = RetentionPolicy> {
        (
            prop::option::of(0u32..5),
            prop::option::of(0u32..5),
            prop::option::of(0u32..5),
            prop::option::of(0u32..4),
            prop::option::of(0u32..60),
        )
            .prop_map(|(last, daily, weekly, minv, days)| RetentionPolicy {
                keep_last: last,
                keep_daily: daily,
                keep_weekly: weekly,
                min_verified: minv,
                days,
                ..Default::default()
            })
    }

    proptest! {
        #[test]
        fn guards_always_hold(cands in arb_candidates(), policy in arb_policy()) {
            let now = at(2026, 4, 1, 0);
            let p = plan(&policy, &cands, now);
            let kept: BTreeSet<&str> = p.iter().filter(|d| d.keep).map(|d| d.id.as_str()).collect();
            prop_assert_eq!(p.len(), cands.len());
            let sources: BTreeSet<&str> = cands.iter().map(|c| c.source.as_str()).collect();
            for s in sources {
                let mut cs: Vec<&Candidate> = cands.iter().filter(|c| c.source == s).collect();
                cs.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
                // The newest restore-verified backup is kept.
                if let Some(c) = cs.iter().find(|c| c.verified == "restore") {
                    prop_assert!(kept.contains(c.id.as_str()));
                }
                // Never below min_verified verified backups (when there are that many).
                let verified: Vec<&&Candidate> = cs.iter().filter(|c| matches!(c.verified, "data" | "restore")).collect();
                let want = (policy.min_verified.unwrap_or(0) as usize).min(verified.len());
                let kept_verified = verified.iter().filter(|c| kept.contains(c.id.as_str())).count();
                prop_assert!(kept_verified >= want);
                // Something of every source is kept.
                prop_assert!(cs.iter().any(|c| kept.contains(c.id.as_str())));
                // All found damaged: all kept.
                if cs.iter().all(|c| c.verified == "failed") {
                    prop_assert!(cs.iter().all(|c| kept.contains(c.id.as_str())));
                }
                // Kept differentials keep their full.
                for c in &cs {
                    if kept.contains(c.id.as_str()) {
                        if let Some(b) = &c.based_on {
                            prop_assert!(kept.contains(b.as_str()));
                        }
                    }
                }
                // A damaged backup is kept only by a guard, never by a keep_* slot or days.
                for d in p.iter().filter(|d| d.keep) {
                    let c = cands.iter().find(|c| c.id == d.id).expect("candidate");
                    if c.verified == "failed" {
                        prop_assert!(d.reasons.iter().all(|r| !r.starts_with("keep_last") && !r.starts_with("daily") && !r.starts_with("weekly") && !r.starts_with("within")), "{:?}", d);
                    }
                }
            }
        }
    }
}
