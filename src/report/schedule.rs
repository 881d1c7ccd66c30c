//! When scheduled reports run: an interval (`24h`) or a 5-field cron expression
//! (`cron: 0 6 * * 1`), both in UTC.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike};

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid report schedule {input:?}: {reason}")]
pub struct ScheduleError {
    input: String,
    reason: String,
}

/// When reports are generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every so many seconds, aligned to the Unix epoch: `24h` fires at 00:00 UTC, `6h` at
    /// 00:00, 06:00, … so a restart neither shifts nor skips a report.
    Every {
        /// The interval in seconds (at least 60).
        secs: i64,
    },
    /// A cron expression: minute, hour, day of month, month, day of week, in UTC.
    Cron(Cron),
}

impl Schedule {
    /// Parses `24h`, `1h 30m` (humantime), `cron: 0 6 * * 1`, or a bare 5-field cron expression.
    pub fn parse(input: &str) -> Result<Self, ScheduleError> {
        let error = |reason: String| ScheduleError {
            input: input.to_string(),
            reason,
        };
        let trimmed = input.trim();
        if let Some(expr) = trimmed.strip_prefix("cron:") {
            return Cron::parse(expr).map(Schedule::Cron).map_err(error);
        }
        if trimmed.split_whitespace().count() == 5 {
            return Cron::parse(trimmed).map(Schedule::Cron).map_err(error);
        }
        let duration = humantime::parse_duration(trimmed).map_err(|e| {
            error(format!(
                "{e}; expected an interval such as `24h` or `cron: MIN HOUR DOM MONTH DOW`"
            ))
        })?;
        let secs = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
        if secs < 60 {
            return Err(error("the interval must be at least one minute".into()));
        }
        Ok(Schedule::Every { secs })
    }

    /// The first time (unix seconds) strictly after `t` the schedule fires; `i64::MAX` if never.
    pub fn next_after(&self, t: i64) -> i64 {
        match self {
            Schedule::Every { secs } => t
                .div_euclid(*secs)
                .checked_add(1)
                .and_then(|n| n.checked_mul(*secs))
                .unwrap_or(i64::MAX),
            Schedule::Cron(cron) => cron.next_after(t),
        }
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every { secs } => write!(
                f,
                "{}",
                humantime::format_duration(std::time::Duration::from_secs(*secs as u64))
            ),
            Schedule::Cron(cron) => write!(f, "cron: {}", cron.source),
        }
    }
}

/// A parsed 5-field cron expression. Fields take `*`, numbers, lists (`1,15`), ranges (`1-5`)
/// and steps (`*/15`, `0-30/10`, `5/20`); months and weekdays also take names (`jan`, `mon`);
/// weekday 0 and 7 are Sunday. As in Vixie cron, when both day of month and day of week are
/// restricted, a day matching either fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    source: String,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    any_day_of_month: bool,
    any_day_of_week: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
/// Longest month length, February counted as 29 days.
const MONTH_DAYS: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// Parses one field into a bit set of allowed values in `min..=max`.
fn field(text: &str, name: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            // The first name is the smallest value: `jan` is 1, `sun` is 0.
            return Ok(min + i as u32);
        }
        let v: u32 = s
            .parse()
            .map_err(|_| format!("{name}: `{s}` is not a number"))?;
        if v < min || v > max {
            return Err(format!("{name}: {v} is outside {min}-{max}"));
        }
        Ok(v)
    };
    let mut bits = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| format!("{name}: step `{step}` is not a number"))?;
                if step == 0 {
                    return Err(format!("{name}: a step must be at least 1"));
                }
                (range, step)
            }
            None => (item, 1),
        };
        let (from, to) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else if item.contains('/') {
            (value(range)?, max)
        } else {
            let v = value(range)?;
            (v, v)
        };
        if from > to {
            return Err(format!("{name}: range {from}-{to} is backwards"));
        }
        for v in (from..=to).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

impl Cron {
    /// Parses `MIN HOUR DOM MONTH DOW`.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(format!(
                "a cron expression has 5 fields (minute hour day-of-month month day-of-week); got {}",
                fields.len()
            ));
        };
        let mut days_of_week = field(dow, "day of week", 0, 7, &WEEKDAYS)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week | 1) & !(1 << 7);
        }
        let cron = Cron {
            source: fields.join(" "),
            minutes: field(minute, "minute", 0, 59, &[])?,
            hours: field(hour, "hour", 0, 23, &[])?,
            days_of_month: field(dom, "day of month", 1, 31, &[])?,
            months: field(month, "month", 1, 12, &MONTHS)?,
            days_of_week,
            any_day_of_month: dom.starts_with('*'),
            any_day_of_week: dow.starts_with('*'),
        };
        if cron.any_day_of_week && !cron.can_fire() {
            return Err(format!(
                "`{}` never fires: no chosen month has the chosen days",
                cron.source
            ));
        }
        Ok(cron)
    }

    fn can_fire(&self) -> bool {
        (1..=12u32).any(|m| {
            self.months & (1 << m) != 0
                && (1..=MONTH_DAYS[m as usize - 1]).any(|d| self.days_of_month & (1 << d) != 0)
        })
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.any_day_of_month || self.any_day_of_week {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first matching minute strictly after `t` (unix seconds), `i64::MAX` if none within
    /// 50 years.
    pub fn next_after(&self, t: i64) -> i64 {
        let start = t.div_euclid(60).saturating_add(1).saturating_mul(60);
        let Some(mut at) = DateTime::from_timestamp(start, 0).map(|d| d.naive_utc()) else {
            return i64::MAX;
        };
        let give_up = at + Duration::days(366 * 50);
        while at < give_up {
            let date = at.date();
            if self.months & (1 << at.month()) == 0 {
                let (y, m) = if at.month() == 12 {
                    (at.year() + 1, 1)
                } else {
                    (at.year(), at.month() + 1)
                };
                at = midnight(NaiveDate::from_ymd_opt(y, m, 1));
            } else if !self.day_matches(date) {
                at = midnight(date.succ_opt());
            } else if self.hours & (1 << at.hour()) == 0 {
                at = at.with_minute(0).unwrap_or(at) + Duration::hours(1);
            } else if self.minutes & (1 << at.minute()) == 0 {
                at += Duration::minutes(1);
            } else {
                return at.and_utc().timestamp();
            }
        }
        i64::MAX
    }
}

fn midnight(date: Option<NaiveDate>) -> NaiveDateTime {
    date.and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or(NaiveDateTime::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time.
    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    }

    fn next(expr: &str, t: i64) -> i64 {
        Schedule::parse(expr).unwrap().next_after(t)
    }

    #[test]
    fn intervals_are_aligned_to_the_epoch() {
        let s = Schedule::parse("24h").unwrap();
        assert_eq!(s, Schedule::Every { secs: 86_400 });
        assert_eq!(s.next_after(at(2024, 1, 8, 13, 5)), at(2024, 1, 9, 0, 0));
        // Strictly after: exactly on a boundary goes to the next one.
        assert_eq!(s.next_after(at(2024, 1, 9, 0, 0)), at(2024, 1, 10, 0, 0));
        assert_eq!(next("6h", at(2024, 1, 8, 13, 5)), at(2024, 1, 8, 18, 0));
        assert_eq!(next("1h 30m", 0), 5400);
        assert_eq!(s.to_string(), "1day");
    }

    #[test]
    fn weekly_cron_fires_on_monday_morning() {
        // 2024-01-08 is a Monday.
        let monday_six = at(2024, 1, 8, 6, 0);
        assert_eq!(next("cron: 0 6 * * 1", at(2024, 1, 3, 12, 0)), monday_six);
        assert_eq!(next("cron: 0 6 * * 1", monday_six), at(2024, 1, 15, 6, 0));
        assert_eq!(next("cron: 0 6 * * mon", monday_six - 1), monday_six);
        assert_eq!(next("0 6 * * MON", monday_six - 1), monday_six);
        assert_eq!(
            Schedule::parse("cron:  0 6 * *   1").unwrap().to_string(),
            "cron: 0 6 * * 1"
        );
    }

    #[test]
    fn lists_ranges_and_steps() {
        let t = at(2024, 1, 8, 10, 7);
        assert_eq!(next("cron: */15 * * * *", t), at(2024, 1, 8, 10, 15));
        assert_eq!(next("cron: 0,30 9-17 * * *", t), at(2024, 1, 8, 10, 30));
        assert_eq!(next("cron: 0 9-17/4 * * *", t), at(2024, 1, 8, 13, 0));
        assert_eq!(next("cron: 5/20 * * * *", t), at(2024, 1, 8, 10, 25));
        assert_eq!(next("cron: 0 0 1 */3 *", t), at(2024, 4, 1, 0, 0));
        assert_eq!(
            next("cron: 0 0 * * 1-5", at(2024, 1, 12, 1, 0)),
            at(2024, 1, 15, 0, 0)
        );
        assert_eq!(next("cron: 0 0 * * 7", t), at(2024, 1, 14, 0, 0));
        assert_eq!(next("cron: 0 0 * * 0", t), at(2024, 1, 14, 0, 0));
    }

    #[test]
    fn month_and_year_boundaries() {
        assert_eq!(
            next("cron: 30 23 31 * *", at(2024, 1, 31, 23, 30)),
            at(2024, 3, 31, 23, 30)
        );
        assert_eq!(
            next("cron: 0 0 1 jan *", at(2024, 6, 1, 0, 0)),
            at(2025, 1, 1, 0, 0)
        );
        // February 29th exists only in leap years.
        assert_eq!(
            next("cron: 0 12 29 2 *", at(2024, 3, 1, 0, 0)),
            at(2028, 2, 29, 12, 0)
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // The 13th, or any Friday: 2024-01-12 is a Friday, before the 13th.
        assert_eq!(
            next("cron: 0 0 13 * 5", at(2024, 1, 10, 0, 0)),
            at(2024, 1, 12, 0, 0)
        );
        assert_eq!(
            next("cron: 0 0 13 * 5", at(2024, 1, 12, 0, 0)),
            at(2024, 1, 13, 0, 0)
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_a_reason() {
        for (input, needle) in [
            ("", "expected an interval"),
            ("soon", "expected an interval"),
            ("10s", "at least one minute"),
            ("cron: 0 6 * *", "5 fields"),
            ("cron: 60 * * * *", "minute: 60 is outside 0-59"),
            ("cron: * 24 * * *", "hour: 24"),
            ("cron: * * 0 * *", "day of month: 0"),
            ("cron: * * * 13 *", "month: 13"),
            ("cron: * * * * 8", "day of week: 8"),
            ("cron: */0 * * * *", "step must be at least 1"),
            ("cron: 5-1 * * * *", "backwards"),
            ("cron: x * * * *", "`x` is not a number"),
            ("cron: 0 0 30 feb *", "never fires"),
        ] {
            let err = Schedule::parse(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
            assert!(err.contains(&format!("{input:?}")), "{err}");
        }
    }
}
