//! Named time intervals (`[[time_intervals]]`) used by routes'
//! `mute_time_intervals` and `active_time_intervals`: configuration types,
//! parsing/validation, and the "is this instant inside" test.
//!
//! Semantics (Alertmanager's `timeinterval` package): an interval contains
//! an instant if **any** of its entries does; an entry contains it if
//! **every** field it sets matches, evaluated in the entry's `location`
//! (default UTC). Ranges `a:b` are inclusive except `times`, whose
//! `end_time` is exclusive (`24:00` allowed). Validation as Alertmanager:
//! ranges must not be reversed (so `saturday:sunday` is rejected — list
//! `["saturday", "sunday"]` instead), `days_of_month` values are 1..=31 or
//! -31..=-1 (negative counts from the end of the month, `-1` = last day),
//! and when clamped to the actual month length a range like `1:31` covers
//! the whole month while `30` never matches in February.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

/// A `{start_time = "09:00", end_time = "17:00"}` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimeSpanConfig {
    /// Inclusive start, `HH:MM` (00:00 to 23:59).
    pub start_time: String,
    /// Exclusive end, `HH:MM` (00:01 to 24:00); must be after the start.
    pub end_time: String,
}

/// One entry of a named interval (`[[time_intervals.time_intervals]]`).
/// An empty or missing field places no constraint.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimeRangeConfig {
    /// Times of day.
    #[serde(default)]
    pub times: Vec<TimeSpanConfig>,
    /// Days of the week, e.g. `"monday:friday"`, `"saturday"`
    /// (case-insensitive).
    #[serde(default)]
    pub weekdays: Vec<String>,
    /// Days of the month, e.g. `"1:5"`, `"-1"` (last day), `"-7:-1"`.
    #[serde(default)]
    pub days_of_month: Vec<String>,
    /// Months by name or number, e.g. `"january:march"`, `"12"`.
    #[serde(default)]
    pub months: Vec<String>,
    /// Years, e.g. `"2026:2027"`.
    #[serde(default)]
    pub years: Vec<String>,
    /// IANA time zone the fields are evaluated in, e.g. `"Europe/Berlin"`.
    /// Default `UTC`.
    #[serde(default)]
    pub location: Option<String>,
}

/// A named interval as written in the configuration (`[[time_intervals]]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimeIntervalConfig {
    /// The name routes refer to.
    pub name: String,
    /// The entries; the interval matches if any entry matches.
    #[serde(default)]
    pub time_intervals: Vec<TimeRangeConfig>,
}

/// An invalid time interval.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time interval {interval:?}: {field}: {msg}")]
pub struct TimeIntervalError {
    /// The interval's name.
    pub interval: String,
    /// The offending field, e.g. `time_intervals[0].weekdays[1]`.
    pub field: String,
    /// What is wrong.
    pub msg: String,
}

/// A validated entry. Ranges are inclusive except `times`
/// (minutes of the day, end exclusive).
#[derive(Debug, Clone, PartialEq)]
pub struct TimeRange {
    /// `(start_minute, end_minute)`, end exclusive, 0..=1440.
    pub times: Vec<(u32, u32)>,
    /// Weekday ranges, 0 = Sunday ... 6 = Saturday.
    pub weekdays: Vec<(u32, u32)>,
    /// Day-of-month ranges, 1..=31 or -31..=-1.
    pub days_of_month: Vec<(i32, i32)>,
    /// Month ranges, 1..=12.
    pub months: Vec<(u32, u32)>,
    /// Year ranges.
    pub years: Vec<(i32, i32)>,
    /// Time zone.
    pub location: Tz,
}

/// A validated named interval.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeInterval {
    /// The name.
    pub name: String,
    /// The entries.
    pub entries: Vec<TimeRange>,
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn split_range(s: &str) -> Result<(&str, &str), String> {
    match s.split_once(':') {
        Some((a, b)) if !b.contains(':') => Ok((a.trim(), b.trim())),
        Some(_) => Err(format!("{s:?} has more than one ':'")),
        None => Ok((s.trim(), s.trim())),
    }
}

fn parse_range<T: PartialOrd + Copy>(
    s: &str,
    one: impl Fn(&str) -> Result<T, String>,
) -> Result<(T, T), String> {
    let (a, b) = split_range(s)?;
    let (a, b) = (one(a)?, one(b)?);
    if a > b {
        return Err(format!("range {s:?} is reversed (start after end)"));
    }
    Ok((a, b))
}

fn parse_weekday(s: &str) -> Result<u32, String> {
    let l = s.to_ascii_lowercase();
    WEEKDAYS
        .iter()
        .position(|d| *d == l)
        .map(|p| p as u32)
        .ok_or_else(|| format!("{s:?} is not a day of the week"))
}

fn parse_month(s: &str) -> Result<u32, String> {
    let l = s.to_ascii_lowercase();
    if let Some(p) = MONTHS.iter().position(|m| *m == l) {
        return Ok(p as u32 + 1);
    }
    match s.parse::<u32>() {
        Ok(n) if (1..=12).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a month (name or 1-12)")),
    }
}

fn parse_year(s: &str) -> Result<i32, String> {
    match s.parse::<i32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive year")),
    }
}

fn parse_day(s: &str) -> Result<i32, String> {
    match s.parse::<i32>() {
        Ok(n) if (1..=31).contains(&n) || (-31..=-1).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a day of the month (1 to 31, or -31 to -1)"
        )),
    }
}

fn parse_days(s: &str) -> Result<(i32, i32), String> {
    let (a, b) = split_range(s)?;
    let (a, b) = (parse_day(a)?, parse_day(b)?);
    // Only same-sign ranges can be checked statically; `1:-1` (first to
    // last day) is valid, `-1:1` is reversed.
    if (a.signum() == b.signum() && a > b) || (a < 0 && b > 0) {
        return Err(format!("range {s:?} is reversed (start after end)"));
    }
    Ok((a, b))
}

/// Parse `HH:MM` to minutes of the day; `24:00` only when `allow_24`.
fn parse_clock(s: &str, allow_24: bool) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a time of day HH:MM");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    if !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && (m != 0 || !allow_24)) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl TimeInterval {
    /// Validate one configured interval.
    pub fn from_config(cfg: &TimeIntervalConfig) -> Result<Self, TimeIntervalError> {
        let fail = |field: String, msg: String| TimeIntervalError {
            interval: cfg.name.clone(),
            field,
            msg,
        };
        if cfg.name.is_empty() {
            return Err(fail("name".into(), "must not be empty".into()));
        }
        let mut entries = Vec::with_capacity(cfg.time_intervals.len());
        for (i, e) in cfg.time_intervals.iter().enumerate() {
            let p = format!("time_intervals[{i}]");
            let mut times = Vec::new();
            for (j, t) in e.times.iter().enumerate() {
                let start = parse_clock(&t.start_time, false)
                    .map_err(|m| fail(format!("{p}.times[{j}].start_time"), m))?;
                let end = parse_clock(&t.end_time, true)
                    .map_err(|m| fail(format!("{p}.times[{j}].end_time"), m))?;
                if end <= start {
                    return Err(fail(
                        format!("{p}.times[{j}]"),
                        "end_time must be after start_time".into(),
                    ));
                }
                times.push((start, end));
            }
            let list = |field: &str, v: &[String], f: &dyn Fn(&str) -> Result<_, String>| {
                v.iter()
                    .enumerate()
                    .map(|(j, s)| f(s).map_err(|m| fail(format!("{p}.{field}[{j}]"), m)))
                    .collect::<Result<Vec<_>, _>>()
            };
            let weekdays = list("weekdays", &e.weekdays, &|s| parse_range(s, parse_weekday))?;
            let days_of_month = e
                .days_of_month
                .iter()
                .enumerate()
                .map(|(j, s)| parse_days(s).map_err(|m| fail(format!("{p}.days_of_month[{j}]"), m)))
                .collect::<Result<Vec<_>, _>>()?;
            let months = list("months", &e.months, &|s| parse_range(s, parse_month))?;
            let years = e
                .years
                .iter()
                .enumerate()
                .map(|(j, s)| {
                    parse_range(s, parse_year).map_err(|m| fail(format!("{p}.years[{j}]"), m))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let location = match e.location.as_deref() {
                None => Tz::UTC,
                Some(l) => l.parse::<Tz>().map_err(|_| {
                    fail(
                        format!("{p}.location"),
                        format!(
                            "unknown time zone {l:?} (use an IANA name such as \"Europe/Berlin\")"
                        ),
                    )
                })?,
            };
            entries.push(TimeRange {
                times,
                weekdays,
                days_of_month,
                months,
                years,
                location,
            });
        }
        Ok(TimeInterval {
            name: cfg.name.clone(),
            entries,
        })
    }

    /// Whether the instant lies in the interval (any entry matches).
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.entries.iter().any(|e| e.contains(t))
    }
}

fn days_in_month(year: i32, month: u32) -> i32 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    match (
        NaiveDate::from_ymd_opt(year, month, 1),
        NaiveDate::from_ymd_opt(ny, nm, 1),
    ) {
        (Some(a), Some(b)) => (b - a).num_days() as i32,
        _ => 31,
    }
}

impl TimeRange {
    /// Whether the instant matches every field this entry sets.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&self.location);
        if !self.times.is_empty() {
            let minute = local.hour() * 60 + local.minute();
            if !self.times.iter().any(|&(s, e)| s <= minute && minute < e) {
                return false;
            }
        }
        if !self.weekdays.is_empty() {
            let wd = local.weekday().num_days_from_sunday();
            if !self.weekdays.iter().any(|&(a, b)| a <= wd && wd <= b) {
                return false;
            }
        }
        if !self.days_of_month.is_empty() {
            let n = days_in_month(local.year(), local.month());
            let day = local.day() as i32;
            let resolve = |d: i32| if d < 0 { n + d + 1 } else { d };
            let ok = self.days_of_month.iter().any(|&(a, b)| {
                let (a, b) = (resolve(a).max(1), resolve(b).min(n));
                a <= day && day <= b
            });
            if !ok {
                return false;
            }
        }
        if !self.months.is_empty() {
            let m = local.month();
            if !self.months.iter().any(|&(a, b)| a <= m && m <= b) {
                return false;
            }
        }
        if !self.years.is_empty() {
            let y = local.year();
            if !self.years.iter().any(|&(a, b)| a <= y && y <= b) {
                return false;
            }
        }
        true
    }
}

/// Validate all configured intervals and index them by name; duplicate
/// names are an error.
pub fn build_time_intervals(
    cfgs: &[TimeIntervalConfig],
) -> Result<BTreeMap<String, TimeInterval>, TimeIntervalError> {
    let mut out = BTreeMap::new();
    for c in cfgs {
        let ti = TimeInterval::from_config(c)?;
        if out.insert(c.name.clone(), ti).is_some() {
            return Err(TimeIntervalError {
                interval: c.name.clone(),
                field: "name".into(),
                msg: "defined more than once".into(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Top {
        time_intervals: Vec<TimeIntervalConfig>,
    }

    fn parse(text: &str) -> Result<BTreeMap<String, TimeInterval>, TimeIntervalError> {
        let top: Top = toml::from_str(text).unwrap();
        build_time_intervals(&top.time_intervals)
    }

    fn one(entry: &str) -> TimeInterval {
        let text = format!(
            "[[time_intervals]]\nname = \"t\"\n[[time_intervals.time_intervals]]\n{entry}\n"
        );
        parse(&text).unwrap().remove("t").unwrap()
    }

    fn one_err(entry: &str) -> TimeIntervalError {
        let text = format!(
            "[[time_intervals]]\nname = \"t\"\n[[time_intervals.time_intervals]]\n{entry}\n"
        );
        parse(&text).unwrap_err()
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn full_example_parses() {
        let m = parse(
            r#"
[[time_intervals]]
name = "business-hours"
[[time_intervals.time_intervals]]
times = [{start_time="09:00", end_time="17:00"}]
weekdays = ["monday:friday", "saturday"]
days_of_month = ["1:5", "-1"]
months = ["january:march", "12"]
years = ["2026:2027"]
location = "Europe/Berlin"

[[time_intervals]]
name = "weekends"
[[time_intervals.time_intervals]]
weekdays = ["saturday", "sunday"]
"#,
        )
        .unwrap();
        let bh = &m["business-hours"];
        assert_eq!(bh.entries[0].times, vec![(540, 1020)]);
        assert_eq!(bh.entries[0].weekdays, vec![(1, 5), (6, 6)]);
        assert_eq!(bh.entries[0].days_of_month, vec![(1, 5), (-1, -1)]);
        assert_eq!(bh.entries[0].months, vec![(1, 3), (12, 12)]);
        assert_eq!(bh.entries[0].years, vec![(2026, 2027)]);
        assert_eq!(bh.entries[0].location, chrono_tz::Europe::Berlin);
        // 2026-01-02 is a Friday; 10:00 Berlin = 09:00 UTC.
        assert!(bh.contains(at(2026, 1, 2, 9, 0)));
        // 08:30 UTC = 09:30 Berlin -> inside; 07:59 UTC = 08:59 Berlin -> not.
        assert!(bh.contains(at(2026, 1, 2, 8, 30)));
        assert!(!bh.contains(at(2026, 1, 2, 7, 59)));
        // Day 6 is not in 1:5 nor the last day.
        assert!(!bh.contains(at(2026, 1, 6, 10, 0)));
        // 2026-03-31 is a Tuesday and the last day of March.
        assert!(bh.contains(at(2026, 3, 31, 10, 0)));
        // April is not listed.
        assert!(!bh.contains(at(2026, 4, 1, 10, 0)));
        // 2028 is outside the years.
        assert!(!bh.contains(at(2028, 1, 3, 10, 0)));
        let we = &m["weekends"];
        assert!(we.contains(at(2026, 11, 21, 12, 0))); // Saturday
        assert!(we.contains(at(2026, 11, 22, 0, 0))); // Sunday
        assert!(!we.contains(at(2026, 11, 23, 0, 0))); // Monday
    }

    #[test]
    fn times_end_exclusive_and_24_00() {
        let ti = one(r#"times = [{start_time="09:00", end_time="17:00"}]"#);
        assert!(ti.contains(at(2026, 5, 5, 9, 0)));
        assert!(ti.contains(at(2026, 5, 5, 16, 59)));
        assert!(!ti.contains(at(2026, 5, 5, 17, 0)));
        assert!(!ti.contains(at(2026, 5, 5, 8, 59)));
        let ti = one(
            r#"times = [{start_time="22:00", end_time="24:00"}, {start_time="00:00", end_time="06:00"}]"#,
        );
        assert!(ti.contains(at(2026, 5, 5, 23, 59)));
        assert!(ti.contains(at(2026, 5, 6, 0, 0)));
        assert!(ti.contains(at(2026, 5, 6, 5, 59)));
        assert!(!ti.contains(at(2026, 5, 6, 6, 0)));
        assert!(!ti.contains(at(2026, 5, 6, 12, 0)));
    }

    #[test]
    fn weekday_ranges() {
        let ti = one(r#"weekdays = ["Monday:Wednesday", "friday"]"#);
        // 2026-11-16 is a Monday.
        let expect = [true, true, true, false, true, false, false];
        for (i, e) in expect.iter().enumerate() {
            assert_eq!(
                ti.contains(at(2026, 11, 16 + i as u32, 12, 0)),
                *e,
                "day {i}"
            );
        }
        let ti = one(r#"weekdays = ["sunday:saturday"]"#);
        for i in 0..7 {
            assert!(ti.contains(at(2026, 11, 15 + i, 0, 0)));
        }
    }

    #[test]
    fn negative_days_of_month() {
        let ti = one(r#"days_of_month = ["-1"]"#);
        assert!(ti.contains(at(2026, 2, 28, 12, 0)));
        assert!(!ti.contains(at(2026, 2, 27, 12, 0)));
        assert!(ti.contains(at(2028, 2, 29, 12, 0))); // leap year
        assert!(!ti.contains(at(2028, 2, 28, 12, 0)));
        assert!(ti.contains(at(2026, 4, 30, 0, 0)));
        assert!(ti.contains(at(2026, 12, 31, 0, 0)));
        let ti = one(r#"days_of_month = ["-3:-2"]"#);
        assert!(ti.contains(at(2026, 1, 29, 0, 0)));
        assert!(ti.contains(at(2026, 1, 30, 0, 0)));
        assert!(!ti.contains(at(2026, 1, 31, 0, 0)));
        assert!(!ti.contains(at(2026, 1, 28, 0, 0)));
        // First to last day: the whole month.
        let ti = one(r#"days_of_month = ["1:-1"]"#);
        assert!(ti.contains(at(2026, 2, 1, 0, 0)));
        assert!(ti.contains(at(2026, 2, 28, 0, 0)));
        // Clamping: 30 never happens in February, 28:31 covers its end.
        let ti = one(r#"days_of_month = ["30"]"#);
        assert!(!ti.contains(at(2026, 2, 28, 0, 0)));
        assert!(ti.contains(at(2026, 4, 30, 0, 0)));
        let ti = one(r#"days_of_month = ["28:31"]"#);
        assert!(ti.contains(at(2026, 2, 28, 0, 0)));
        // -31 in a 30-day month clamps to day 1.
        let ti = one(r#"days_of_month = ["-31:-30"]"#);
        assert!(ti.contains(at(2026, 4, 1, 0, 0)));
        assert!(!ti.contains(at(2026, 4, 2, 0, 0)));
    }

    #[test]
    fn location_changes_local_date() {
        // 2026-11-20 (Friday) 23:30 UTC is Saturday 08:30 in Tokyo.
        let ti = one("weekdays = [\"saturday\"]\nlocation = \"Asia/Tokyo\"");
        assert!(ti.contains(at(2026, 11, 20, 23, 30)));
        assert!(!ti.contains(at(2026, 11, 20, 14, 0)));
        let utc = one("weekdays = [\"saturday\"]");
        assert!(!utc.contains(at(2026, 11, 20, 23, 30)));
        // DST: Berlin is UTC+2 in July, UTC+1 in January.
        let ti = one(
            "times = [{start_time=\"09:00\", end_time=\"10:00\"}]\nlocation = \"Europe/Berlin\"",
        );
        assert!(ti.contains(at(2026, 7, 1, 7, 30)));
        assert!(!ti.contains(at(2026, 7, 1, 8, 30)));
        assert!(ti.contains(at(2026, 1, 1, 8, 30)));
        // Month/year boundaries in local time: 2026-12-31 23:30 UTC is
        // 2027-01-01 in Berlin.
        let ti = one("years = [\"2027\"]\nmonths = [\"january\"]\nlocation = \"Europe/Berlin\"");
        assert!(ti.contains(at(2026, 12, 31, 23, 30)));
        assert!(!ti.contains(at(2026, 12, 31, 22, 30)));
    }

    #[test]
    fn any_entry_and_all_fields() {
        let m = parse(
            r#"
[[time_intervals]]
name = "x"
[[time_intervals.time_intervals]]
weekdays = ["monday"]
months = ["may"]
[[time_intervals.time_intervals]]
years = ["2030"]
"#,
        )
        .unwrap();
        let x = &m["x"];
        // 2026-05-04 is a Monday in May.
        assert!(x.contains(at(2026, 5, 4, 0, 0)));
        // Monday in June: first entry fails on month, second on year.
        assert!(!x.contains(at(2026, 6, 1, 0, 0)));
        assert!(x.contains(at(2030, 6, 1, 0, 0)));
        // An entry with no fields matches always; no entries never matches.
        assert!(one("").contains(at(2026, 1, 1, 0, 0)));
        let empty = parse("[[time_intervals]]\nname = \"e\"\n").unwrap();
        assert!(!empty["e"].contains(at(2026, 1, 1, 0, 0)));
    }

    #[test]
    fn months_numeric_and_names() {
        let ti = one(r#"months = ["11:12", "feb"]"#.replace("feb", "February").as_str());
        assert!(ti.contains(at(2026, 11, 1, 0, 0)));
        assert!(ti.contains(at(2026, 12, 1, 0, 0)));
        assert!(ti.contains(at(2026, 2, 1, 0, 0)));
        assert!(!ti.contains(at(2026, 3, 1, 0, 0)));
    }

    #[test]
    fn parse_errors_name_interval_and_field() {
        let e = one_err(r#"weekdays = ["monday", "funday"]"#);
        assert_eq!(e.interval, "t");
        assert_eq!(e.field, "time_intervals[0].weekdays[1]");
        assert!(
            e.to_string()
                .starts_with("time interval \"t\": time_intervals[0].weekdays[1]: ")
        );
        assert_eq!(
            one_err(r#"weekdays = ["saturday:sunday"]"#).field,
            "time_intervals[0].weekdays[0]"
        );
        assert_eq!(
            one_err(r#"days_of_month = ["0"]"#).field,
            "time_intervals[0].days_of_month[0]"
        );
        assert_eq!(
            one_err(r#"days_of_month = ["32"]"#).field,
            "time_intervals[0].days_of_month[0]"
        );
        assert_eq!(
            one_err(r#"days_of_month = ["5:1"]"#).field,
            "time_intervals[0].days_of_month[0]"
        );
        assert_eq!(
            one_err(r#"days_of_month = ["-1:-5"]"#).field,
            "time_intervals[0].days_of_month[0]"
        );
        assert_eq!(
            one_err(r#"days_of_month = ["-1:5"]"#).field,
            "time_intervals[0].days_of_month[0]"
        );
        assert_eq!(
            one_err(r#"months = ["march:january"]"#).field,
            "time_intervals[0].months[0]"
        );
        assert_eq!(
            one_err(r#"months = ["13"]"#).field,
            "time_intervals[0].months[0]"
        );
        assert_eq!(
            one_err(r#"years = ["2027:2026"]"#).field,
            "time_intervals[0].years[0]"
        );
        assert_eq!(
            one_err(r#"years = ["1:2:3"]"#).field,
            "time_intervals[0].years[0]"
        );
        assert_eq!(
            one_err(r#"location = "Mars/Olympus""#).field,
            "time_intervals[0].location"
        );
        assert_eq!(
            one_err(r#"times = [{start_time="24:00", end_time="24:00"}]"#).field,
            "time_intervals[0].times[0].start_time"
        );
        assert_eq!(
            one_err(r#"times = [{start_time="10:00", end_time="09:00"}]"#).field,
            "time_intervals[0].times[0]"
        );
        assert_eq!(
            one_err(r#"times = [{start_time="10:00", end_time="9:60"}]"#).field,
            "time_intervals[0].times[0].end_time"
        );
        assert_eq!(
            one_err(r#"times = [{start_time="10:00", end_time="24:01"}]"#).field,
            "time_intervals[0].times[0].end_time"
        );
        let dup = parse("[[time_intervals]]\nname = \"a\"\n[[time_intervals]]\nname = \"a\"\n")
            .unwrap_err();
        assert_eq!((dup.interval.as_str(), dup.field.as_str()), ("a", "name"));
        let bad: Result<Top, _> = toml::from_str(
            "[[time_intervals]]\nname = \"a\"\n[[time_intervals.time_intervals]]\nweekday = [\"monday\"]\n",
        );
        assert!(bad.is_err(), "unknown fields are rejected");
    }

    #[test]
    fn clock_parsing() {
        assert_eq!(parse_clock("00:00", false), Ok(0));
        assert_eq!(parse_clock("9:05", false), Ok(545));
        assert_eq!(parse_clock("23:59", false), Ok(1439));
        assert_eq!(parse_clock("24:00", true), Ok(1440));
        assert!(parse_clock("24:00", false).is_err());
        assert!(parse_clock("12", true).is_err());
        assert!(parse_clock("12:5", true).is_err());
        assert!(parse_clock("+1:00", true).is_err());
    }
}
