//! Cron schedules of workflows: `schedule: "0 6 * * *"`, read in
//! `timezone` (default UTC), firing each slot once.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// Most slots one tick fires for a workflow that is catching up.
const MAX_CATCHUP: usize = 100;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    catchup: bool,
}

impl Schedule {
    pub fn parse(expr: &str, timezone: Option<&str>, catchup: bool) -> Result<Schedule, String> {
        let cron = Cron::new(expr)
            .parse()
            .map_err(|e| format!("invalid cron schedule {expr:?}: {e}"))?;
        let tz = match timezone {
            Some(name) => name.parse::<Tz>().map_err(|_| {
                format!("unknown time zone {name:?} (use an IANA name such as \"Europe/Paris\")")
            })?,
            None => Tz::UTC,
        };
        Ok(Schedule { cron, tz, catchup })
    }

    /// The first slot after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .iter_after(after.with_timezone(&self.tz))
            .next()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The slots in `[from, until)`, at most `max` of them (`from` may be
    /// a slot itself).
    pub fn between(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        max: usize,
    ) -> Vec<DateTime<Utc>> {
        let start = from - chrono::Duration::seconds(1);
        self.cron
            .iter_after(start.with_timezone(&self.tz))
            .map(|t| t.with_timezone(&Utc))
            .skip_while(|t| *t < from)
            .take_while(|t| *t < until)
            .take(max)
            .collect()
    }

    /// The slots after `after` and up to `now` that should fire: all of
    /// them (at most 100) when catching up, else only the latest.
    pub fn due(&self, after: DateTime<Utc>, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut slots: Vec<DateTime<Utc>> = self
            .cron
            .iter_after(after.with_timezone(&self.tz))
            .map(|t| t.with_timezone(&Utc))
            .take_while(|t| *t <= now)
            .take(if self.catchup {
                MAX_CATCHUP
            } else {
                usize::MAX
            })
            .collect();
        if !self.catchup {
            slots = slots.pop().into_iter().collect();
        }
        slots
    }
}

/// A backfill bound: an RFC 3339 time as is, or a day `YYYY-MM-DD` (UTC)
/// whose start is the bound, or with `end` the next day's start, so that
/// `--to 2026-11-07` covers the 7th.
pub fn parse_bound(s: &str, end: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        format!("{s:?} is neither a day (2026-11-01) nor an RFC 3339 time (2026-11-01T06:00:00Z)")
    })?;
    let day = if end {
        day.succ_opt().unwrap_or(day)
    } else {
        day
    };
    Ok(day.and_time(chrono::NaiveTime::MIN).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn without_catchup_only_the_latest_missed_slot_fires() {
        let s = Schedule::parse("0 6 * * *", None, false).unwrap();
        let due = s.due(at("2026-11-20T07:00:00Z"), at("2026-11-23T09:00:00Z"));
        assert_eq!(due, vec![at("2026-11-23T06:00:00Z")]);
        assert!(s
            .due(at("2026-11-23T06:00:00Z"), at("2026-11-23T09:00:00Z"))
            .is_empty());
    }

    #[test]
    fn catchup_fires_every_missed_slot_in_the_time_zone() {
        let s = Schedule::parse("0 6 * * *", Some("Europe/Paris"), true).unwrap();
        let due = s.due(at("2026-11-20T07:00:00Z"), at("2026-11-23T09:00:00Z"));
        // 06:00 in Paris is 05:00 UTC in November.
        assert_eq!(
            due,
            vec![
                at("2026-11-21T05:00:00Z"),
                at("2026-11-22T05:00:00Z"),
                at("2026-11-23T05:00:00Z")
            ]
        );
    }

    #[test]
    fn between_is_half_open_and_bounded() {
        let s = Schedule::parse("0 6 * * *", None, false).unwrap();
        let slots = s.between(at("2026-11-01T06:00:00Z"), at("2026-11-04T06:00:00Z"), 10);
        assert_eq!(
            slots,
            vec![
                at("2026-11-01T06:00:00Z"),
                at("2026-11-02T06:00:00Z"),
                at("2026-11-03T06:00:00Z")
            ]
        );
        assert_eq!(
            s.between(at("2026-11-01T00:00:00Z"), at("2027-11-01T00:00:00Z"), 5)
                .len(),
            5
        );
    }

    #[test]
    fn bounds_are_days_or_times() {
        assert_eq!(
            parse_bound("2026-11-07", false).unwrap(),
            at("2026-11-07T00:00:00Z")
        );
        assert_eq!(
            parse_bound("2026-11-07", true).unwrap(),
            at("2026-11-08T00:00:00Z")
        );
        assert_eq!(
            parse_bound("2026-11-07T06:00:00+01:00", true).unwrap(),
            at("2026-11-07T05:00:00Z")
        );
        assert!(parse_bound("7 Nov", false)
            .unwrap_err()
            .contains("neither a day"));
    }

    #[test]
    fn bad_expressions_and_zones_are_named() {
        assert!(Schedule::parse("61 * * * *", None, false)
            .unwrap_err()
            .contains("invalid cron schedule"));
        assert!(Schedule::parse("* * * * *", Some("Mars/Olympus"), false)
            .unwrap_err()
            .contains("unknown time zone \"Mars/Olympus\""));
    }
}
