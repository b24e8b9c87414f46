//! When a timer trigger fires: Function Compute's `cronExpression` in its six-field form (seconds first, UTC) or
//! `@every <duration>`. Pure: parsing and "the next firing after t".
//!
//! Fields: seconds (0-59), minutes (0-59), hours (0-23), day of month (1-31), month (1-12 or `JAN`-`DEC`), day of
//! week (0-6 or `SUN`-`SAT`, 7 is Sunday too). Each field is `*`, `?` (day fields), a value, a range `a-b`, a step
//! `*/n`, `a/n` or `a-b/n`, or a comma-separated list of these. As in the Go `cron` library Function Compute's
//! expressions come from, when both day fields are restricted a day matches either of them.
//!
//! A timer fires at most once a minute: the seconds field must name one second, and `@every` must be at least a
//! minute (a timer that fires every second is refused rather than left to flood its function).

use std::time::Duration;

use chrono::{DateTime, Datelike as _, TimeZone as _, Timelike as _, Utc};

/// Why a schedule was refused; the message names the field and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cronExpression '{expression}': {reason}")]
pub struct ScheduleError {
    /// The expression as given.
    pub expression: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The shortest `@every` interval.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);

/// The values one cron field matches (bit `n` set: value `n` matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    bits: u64,
    /// `*` or `?`: for the day-of-month / day-of-week rule.
    any: bool,
}

impl Field {
    fn matches(self, value: u32) -> bool {
        self.bits & (1 << value) != 0
    }
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A six-field cron expression.
    Cron {
        second: u64,
        minute: u64,
        hour: u64,
        day: u64,
        month: u64,
        weekday: u64,
        /// Day of month was `*` / `?`.
        any_day: bool,
        /// Day of week was `*` / `?`.
        any_weekday: bool,
    },
    /// `@every <duration>`: from the trigger's creation (or its last firing), every so often.
    Every(Duration),
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn parse_value(text: &str, min: u32, max: u32, names: &[&str], name_base: u32) -> Option<u32> {
    if let Some(index) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Some(index as u32 + name_base);
    }
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>().ok().filter(|v| (min..=max).contains(v))
}

/// One field: `name` for messages, values `min..=max`.
fn parse_field(
    text: &str,
    name: &str,
    (min, max): (u32, u32),
    names: &[&str],
    name_base: u32,
    question_allowed: bool,
) -> Result<Field, String> {
    let bad = |part: &str, why: &str| {
        format!(
            "{name} field '{part}': {why} (expected values {min}-{max}, '*', ranges a-b, steps x/n, lists)"
        )
    };
    if text == "?" {
        return if question_allowed {
            Ok(Field {
                bits: range_bits(min, max, 1),
                any: true,
            })
        } else {
            Err(bad(text, "'?' is only for the day fields"))
        };
    }
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step = step
                    .parse::<u32>()
                    .ok()
                    .filter(|s| (1..=1000).contains(s))
                    .ok_or_else(|| bad(part, "the step is not a positive number"))?;
                (range, step)
            }
            None => (part, 1),
        };
        let (low, high) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = parse_value(a, min, max, names, name_base)
                .ok_or_else(|| bad(part, "out of range"))?;
            let b = parse_value(b, min, max, names, name_base)
                .ok_or_else(|| bad(part, "out of range"))?;
            if a > b {
                return Err(bad(part, "the range ends before it starts"));
            }
            (a, b)
        } else {
            let a = parse_value(range, min, max, names, name_base)
                .ok_or_else(|| bad(part, "out of range"))?;
            // `a/n` runs from a to the end of the range, as in the Go library.
            (a, if part.contains('/') { max } else { a })
        };
        bits |= range_bits(low, high, step);
    }
    Ok(Field {
        bits,
        any: text == "*",
    })
}

fn range_bits(low: u32, high: u32, step: u32) -> u64 {
    (low..=high)
        .step_by(step as usize)
        .fold(0u64, |bits, v| bits | (1 << v))
}

/// `5m`, `1h30m`, `90s`: Go's duration syntax with whole units (h, m, s).
fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    if text.is_empty() {
        return None;
    }
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            if number.len() > 9 {
                return None;
            }
            continue;
        }
        let value: u64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(value.checked_mul(unit)?)?;
    }
    number.is_empty().then_some(Duration::from_secs(total))
}

impl Schedule {
    /// Parses a `cronExpression`.
    pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
        Schedule::parse_with(expression, MIN_INTERVAL)
    }

    /// Parses a `cronExpression`, allowing `@every` down to `min_interval` (tests use less than a minute; cron
    /// expressions still fire at most once a minute).
    pub fn parse_with(expression: &str, min_interval: Duration) -> Result<Schedule, ScheduleError> {
        let error = |reason: String| ScheduleError {
            expression: expression.chars().take(200).collect(),
            reason,
        };
        let text = expression.trim();
        if let Some(rest) = text.strip_prefix("@every ") {
            let interval = parse_duration(rest.trim()).ok_or_else(|| {
                error(format!(
                    "'{rest}' is not a duration: expected e.g. 5m, 1h30m, 90s"
                ))
            })?;
            if interval < min_interval.max(Duration::from_secs(1)) {
                return Err(error(format!(
                    "every {} s is too often: a timer fires at most once every {} s",
                    interval.as_secs(),
                    min_interval.as_secs()
                )));
            }
            return Ok(Schedule::Every(interval));
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(error(format!(
                "{} fields: expected six (seconds minutes hours day-of-month month day-of-week), or @every \
                 <duration>",
                fields.len()
            )));
        }
        let second = parse_field(fields[0], "seconds", (0, 59), &[], 0, false).map_err(error)?;
        if second.bits.count_ones() != 1 {
            return Err(error(format!(
                "seconds field '{}' names {} seconds: a timer fires at most once a minute, so it must name one",
                fields[0],
                second.bits.count_ones()
            )));
        }
        let minute = parse_field(fields[1], "minutes", (0, 59), &[], 0, false).map_err(error)?;
        let hour = parse_field(fields[2], "hours", (0, 23), &[], 0, false).map_err(error)?;
        let day = parse_field(fields[3], "day-of-month", (1, 31), &[], 0, true).map_err(error)?;
        let month = parse_field(fields[4], "month", (1, 12), &MONTHS, 1, false).map_err(error)?;
        let mut weekday =
            parse_field(fields[5], "day-of-week", (0, 7), &WEEKDAYS, 0, true).map_err(error)?;
        if weekday.matches(7) {
            weekday.bits = (weekday.bits & !(1 << 7)) | 1;
        }
        Ok(Schedule::Cron {
            second: second.bits,
            minute: minute.bits,
            hour: hour.bits,
            day: day.bits,
            month: month.bits,
            weekday: weekday.bits,
            any_day: day.any,
            any_weekday: weekday.any,
        })
    }

    /// The first firing strictly after `after` (`anchor`: where `@every` counts from). `None` when the
    /// expression never matches (e.g. February 30th) within the next few years.
    pub fn next_after(&self, after: DateTime<Utc>, anchor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match *self {
            Schedule::Every(interval) => {
                let step = i64::try_from(interval.as_millis()).ok()?.max(1);
                let since = (after - anchor).num_milliseconds();
                let periods = if since < 0 { 0 } else { since / step + 1 };
                Some(anchor + chrono::Duration::milliseconds(periods.checked_mul(step)?))
            }
            Schedule::Cron {
                second,
                minute,
                hour,
                day,
                month,
                weekday,
                any_day,
                any_weekday,
            } => {
                let has = |bits: u64, v: u32| bits & (1 << v) != 0;
                let day_ok = |t: &DateTime<Utc>| {
                    let by_day = has(day, t.day());
                    let by_weekday = has(weekday, t.weekday().num_days_from_sunday());
                    if any_day || any_weekday {
                        by_day && by_weekday
                    } else {
                        by_day || by_weekday
                    }
                };
                let start = after.timestamp() + 1;
                let mut t = Utc.timestamp_opt(start, 0).single()?;
                let limit = after + chrono::Duration::days(5 * 366);
                while t <= limit {
                    if !has(month, t.month()) {
                        let (y, m) = if t.month() == 12 {
                            (t.year() + 1, 1)
                        } else {
                            (t.year(), t.month() + 1)
                        };
                        t = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()?;
                        continue;
                    }
                    if !day_ok(&t) {
                        t = (t.date_naive() + chrono::Duration::days(1))
                            .and_hms_opt(0, 0, 0)?
                            .and_utc();
                        continue;
                    }
                    if !has(hour, t.hour()) {
                        t = t.with_minute(0)?.with_second(0)? + chrono::Duration::hours(1);
                        continue;
                    }
                    if !has(minute, t.minute()) {
                        t = t.with_second(0)? + chrono::Duration::minutes(1);
                        continue;
                    }
                    if !has(second, t.second()) {
                        t += chrono::Duration::seconds(1);
                        continue;
                    }
                    return Some(t);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn next(expression: &str, after: &str) -> String {
        Schedule::parse(expression)
            .unwrap()
            .next_after(at(after), at(after))
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    #[test]
    fn the_guides_example_fires_at_minute_one_of_every_hour() {
        assert_eq!(
            next("0 1/1000 * * * *", "2018-04-10T01:31:00Z"),
            "2018-04-10T02:01:00Z"
        );
        assert_eq!(
            next("0 1/1000 * * * *", "2018-04-10T01:00:30Z"),
            "2018-04-10T01:01:00Z"
        );
    }

    #[test]
    fn cron_fields_steps_ranges_names_and_days() {
        assert_eq!(
            next("0 */5 * * * *", "2024-01-01T00:07:10Z"),
            "2024-01-01T00:10:00Z"
        );
        assert_eq!(
            next("30 0 12 * * ?", "2024-01-01T12:00:30Z"),
            "2024-01-02T12:00:30Z"
        );
        assert_eq!(
            next("0 0 0 1 JAN *", "2024-03-01T00:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next("0 0 9 ? * MON-FRI", "2024-06-07T10:00:00Z"),
            "2024-06-10T09:00:00Z"
        );
        assert_eq!(
            next("0 0 9 * * 7", "2024-06-07T10:00:00Z"),
            "2024-06-09T09:00:00Z"
        );
        // Both day fields restricted: either matches.
        assert_eq!(
            next("0 0 0 15 * MON", "2024-06-07T10:00:00Z"),
            "2024-06-10T00:00:00Z"
        );
        assert_eq!(
            next("0 0 0 29 FEB ?", "2023-03-01T00:00:00Z"),
            "2024-02-29T00:00:00Z"
        );
        assert_eq!(
            next("0 0,30 8-9 * * *", "2024-01-01T08:31:00Z"),
            "2024-01-01T09:00:00Z"
        );
        assert!(
            Schedule::parse("0 0 0 30 FEB ?")
                .unwrap()
                .next_after(at("2024-01-01T00:00:00Z"), at("2024-01-01T00:00:00Z"))
                .is_none()
        );
    }

    #[test]
    fn every_counts_from_its_anchor() {
        let every = Schedule::parse("@every 5m").unwrap();
        assert_eq!(every, Schedule::Every(Duration::from_secs(300)));
        let anchor = at("2024-01-01T00:00:00Z");
        assert_eq!(
            every.next_after(at("2024-01-01T00:04:59Z"), anchor),
            Some(at("2024-01-01T00:05:00Z"))
        );
        assert_eq!(
            every.next_after(at("2024-01-01T00:05:00Z"), anchor),
            Some(at("2024-01-01T00:10:00Z"))
        );
        assert_eq!(
            Schedule::parse("@every 1h30m").unwrap(),
            Schedule::Every(Duration::from_secs(5400))
        );
    }

    #[test]
    fn schedules_firing_more_than_once_a_minute_and_nonsense_are_refused() {
        for (bad, says) in [
            ("* * * * * *", "at most once a minute"),
            ("*/10 * * * * *", "at most once a minute"),
            ("0,30 * * * * *", "at most once a minute"),
            ("@every 1s", "at most once every 60 s"),
            ("@every 59s", "at most once every 60 s"),
            ("@every 0m", "at most once every 60 s"),
            ("@every", "six"),
            ("@every 5x", "not a duration"),
            ("@every 99999999999h", "not a duration"),
            ("0 * * * *", "5 fields"),
            ("0 60 * * * *", "minutes"),
            ("0 * 24 * * *", "hours"),
            ("0 * * 0 * *", "day-of-month"),
            ("0 * * * 13 *", "month"),
            ("0 * * * * 8", "day-of-week"),
            ("0 5-1 * * * *", "ends before"),
            ("0 */0 * * * *", "step"),
            ("? * * * * *", "only for the day"),
            ("0 a * * * *", "minutes"),
            ("", "0 fields"),
        ] {
            let error = Schedule::parse(bad).unwrap_err();
            assert!(error.to_string().contains(says), "{bad}: {error}");
        }
    }
}
