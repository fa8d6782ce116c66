//! Cron expressions: parsed and computed by croner; turned into systemd
//! `OnCalendar=` specs field by field, so that a timer fires when cron
//! would.

use std::time::SystemTime;

use chrono::{DateTime, Local, LocalResult, TimeZone, Timelike};
use croner::Cron;
use croner::errors::CronError;

/// `@name` shorthands, as Vixie cron has them.
const ALIASES: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// What kvmx-ci takes, said in errors.
const SUPPORTED: &str = "kvmx-ci takes five fields `minute hour day month weekday` with numbers, \
                         names (jan, mon), `*`, lists (`,`), ranges (`-`) and steps (`/`), \
                         or @hourly, @daily, @weekly, @monthly, @yearly";

/// The five fields of `expression`, aliases expanded.
fn fields(expression: &str) -> Result<[String; 5], String> {
    let trimmed = expression.trim();
    let expanded = if trimmed.starts_with('@') {
        ALIASES
            .iter()
            .find(|(alias, _)| alias.eq_ignore_ascii_case(trimmed))
            .map(|(_, fields)| *fields)
            .ok_or_else(|| format!("unknown shorthand `{trimmed}`: {SUPPORTED}"))?
    } else {
        trimmed
    };
    let parts: Vec<String> = expanded
        .split_whitespace()
        // croner reads `?` as `*`; so does the conversion.
        .map(|part| part.replace('?', "*"))
        .collect();
    parts.try_into().map_err(|parts: Vec<String>| {
        format!("{} fields where cron has 5: {SUPPORTED}", parts.len())
    })
}

/// Parses `expression` with croner, after checking that it can also become
/// a systemd timer.
pub(super) fn parse(expression: &str) -> Result<Cron, String> {
    let fields = fields(expression)?;
    on_calendar(expression)?;
    Cron::new(&fields.join(" "))
        .parse()
        .map_err(|error| format!("invalid cron expression: {}", describe(&error)))
}

fn describe(error: &CronError) -> String {
    match error {
        CronError::ComponentError(text) | CronError::InvalidPattern(text) => text.clone(),
        other => format!("{other:?}"),
    }
}

/// The first time after `after` (local time, whole seconds) that
/// `expression` names; none when it names no time in croner's search
/// range (such as February 30).
pub(super) fn next_after(
    expression: &str,
    after: SystemTime,
) -> Result<Option<SystemTime>, String> {
    let cron = parse(expression)?;
    let local: DateTime<Local> = after.into();
    // Whole seconds: a fraction must not carry the search past a match.
    let local = local.with_nanosecond(0).unwrap_or(local);
    let mut from = local;
    // croner moves a time that a daylight saving change skips (02:30 on
    // the night the clocks go from 02:00 to 03:00) to the next hour, which
    // the pattern does not name; systemd skips it. Skipping it too keeps
    // `run --due` and the timer in step.
    for _ in 0..DST_SKIPS {
        let next = match cron.find_next_occurrence(&from, false) {
            Ok(next) => next,
            Err(CronError::TimeSearchLimitExceeded) => return Ok(None),
            Err(error) => {
                return Err(format!(
                    "cannot compute its next time: {}",
                    describe(&error)
                ));
            }
        };
        // Its answer may carry the offset from before the change: read the
        // instant again in local time.
        let next = next.with_timezone(&Local);
        // When the clocks go back, croner names the second of a repeated
        // time; systemd the first, once. (chrono does not order the two.)
        if let LocalResult::Ambiguous(one, other) = Local.from_local_datetime(&next.naive_local())
            && next == one.max(other)
        {
            let first = one.min(other);
            if first > local {
                return Ok(Some(first.into()));
            }
            from = next;
            continue;
        }
        if cron.is_time_matching(&next).unwrap_or(false) {
            return Ok(Some(next.into()));
        }
        from = next;
    }
    Err("cannot compute its next time: croner keeps naming times the pattern does not".to_owned())
}

/// How many times in a row a daylight saving change may move croner's
/// answer off the pattern (each change moves it once).
const DST_SKIPS: usize = 8;

/// One field's bounds and names.
struct Field {
    what: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    what: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    what: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Field = Field {
    what: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    what: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const WEEKDAY: Field = Field {
    what: "weekday",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// systemd's weekday names, Monday first as systemd orders them.
const SYSTEMD_DAYS: [(u32, &str); 7] = [
    (1, "Mon"),
    (2, "Tue"),
    (3, "Wed"),
    (4, "Thu"),
    (5, "Fri"),
    (6, "Sat"),
    (0, "Sun"),
];

/// One list item of a field: `*`, `a`, `a-b`, each with an optional
/// `/step`.
struct Item {
    range: Option<(u32, u32)>,
    single: bool,
    step: Option<u32>,
}

impl Field {
    fn value(&self, text: &str) -> Result<u32, String> {
        let lower = text.to_ascii_lowercase();
        let number = match self.names.iter().position(|name| *name == lower) {
            // Months count from 1 (January), weekdays from 0 (Sunday).
            Some(index) => index as u32 + self.min.min(1),
            None => text.parse::<u32>().map_err(|_| {
                format!(
                    "`{text}` in the {} field is not supported: {SUPPORTED}",
                    self.what
                )
            })?,
        };
        if number < self.min || number > self.max {
            return Err(format!(
                "{number} is out of the {} field's range {}-{}",
                self.what, self.min, self.max
            ));
        }
        Ok(number)
    }

    fn items(&self, text: &str) -> Result<Vec<Item>, String> {
        text.split(',').map(|item| self.item(item)).collect()
    }

    fn item(&self, text: &str) -> Result<Item, String> {
        let (range, step) = match text.split_once('/') {
            Some((range, step)) => {
                let step = step
                    .parse::<u32>()
                    .ok()
                    .filter(|step| *step > 0)
                    .ok_or_else(|| format!("invalid step `/{step}` in the {} field", self.what))?;
                (range, Some(step))
            }
            None => (text, None),
        };
        if range == "*" {
            return Ok(Item {
                range: None,
                single: false,
                step,
            });
        }
        let (start, end, single) = match range.split_once('-') {
            Some((start, end)) => (self.value(start)?, self.value(end)?, false),
            None => {
                let value = self.value(range)?;
                (value, value, true)
            }
        };
        if start > end {
            return Err(format!(
                "the range `{range}` of the {} field runs backwards",
                self.what
            ));
        }
        Ok(Item {
            range: Some((start, end)),
            single,
            step,
        })
    }

    /// The field in systemd's words.
    fn on_calendar(&self, text: &str) -> Result<String, String> {
        let items = self.items(text)?;
        let spelled: Vec<String> = items
            .iter()
            .map(|item| match (item.range, item.step) {
                (None, None) => "*".to_owned(),
                (None, Some(step)) => format!("{}/{step}", self.min),
                (Some((start, _)), None) if item.single => start.to_string(),
                (Some((start, _)), Some(step)) if item.single => format!("{start}/{step}"),
                (Some((start, end)), None) => format!("{start}..{end}"),
                (Some((start, end)), Some(step)) => format!("{start}..{end}/{step}"),
            })
            .collect();
        Ok(spelled.join(","))
    }

    /// The values the field names (weekdays: 7 is 0, Sunday).
    fn values(&self, text: &str) -> Result<Vec<u32>, String> {
        let mut values = Vec::new();
        for item in self.items(text)? {
            let (start, end) = match (item.range, item.single, item.step) {
                (None, _, _) => (self.min, self.max),
                // `a/s` runs from a to the field's end, as croner reads it.
                (Some((start, _)), true, Some(_)) => (start, self.max),
                (Some(range), _, _) => range,
            };
            let step = item.step.unwrap_or(1) as usize;
            values.extend((start..=end).step_by(step).map(|v| v % 7));
        }
        values.sort_unstable();
        values.dedup();
        Ok(values)
    }
}

/// The weekdays of a cron weekday field as a systemd weekday list, ranges
/// where days follow each other (systemd's ranges do not wrap past Sunday).
fn systemd_weekdays(text: &str) -> Result<String, String> {
    let days = WEEKDAY.values(text)?;
    let ordered: Vec<&str> = SYSTEMD_DAYS
        .iter()
        .filter(|(number, _)| days.contains(number))
        .map(|(_, name)| *name)
        .collect();
    let positions: Vec<usize> = SYSTEMD_DAYS
        .iter()
        .enumerate()
        .filter(|(_, (number, _))| days.contains(number))
        .map(|(index, _)| index)
        .collect();
    let mut parts = Vec::new();
    let mut index = 0;
    while index < ordered.len() {
        let mut last = index;
        while last + 1 < ordered.len() && positions[last + 1] == positions[last] + 1 {
            last += 1;
        }
        if last >= index + 2 {
            parts.push(format!("{}..{}", ordered[index], ordered[last]));
        } else {
            parts.extend(ordered[index..=last].iter().map(|day| day.to_string()));
        }
        index = last + 1;
    }
    Ok(parts.join(","))
}

/// The `OnCalendar=` specs that fire when `expression` does: one, or two
/// when both the day of month and the weekday are restricted (cron takes
/// either, systemd would want both).
pub(super) fn on_calendar(expression: &str) -> Result<Vec<String>, String> {
    let [minute, hour, day, month, weekday] = fields(expression)?;
    let time = format!(
        "{}:{}:00",
        HOUR.on_calendar(&hour)?,
        MINUTE.on_calendar(&minute)?
    );
    let month = MONTH.on_calendar(&month)?;
    let by_day = format!("*-{month}-{} {time}", DAY.on_calendar(&day)?);
    let by_weekday = || -> Result<String, String> {
        Ok(format!(
            "{} *-{month}-* {time}",
            systemd_weekdays(&weekday)?
        ))
    };
    Ok(match (day == "*", weekday == "*") {
        (_, true) => vec![by_day],
        (true, false) => vec![by_weekday()?],
        (false, false) => vec![by_day, by_weekday()?],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(expression: &str) -> String {
        on_calendar(expression).unwrap().join(" | ")
    }

    #[test]
    fn fields_become_systemd_words() {
        insta::assert_snapshot!(
            [
                "* * * * *",
                "*/15 * * * *",
                "5 4 * * *",
                "0 9-17/2 * * mon-fri",
                "30 2 1,15 * *",
                "0 0 1 */3 *",
                "0 3 * jan,jul sun",
                "0 0 * * 5-7",
                "0 0 * * 0,1,2,4",
                "0 12 13 * 5",
                "0 0 * * */2",
                "@weekly",
                "10/20 * * * *",
            ]
            .map(|expression| format!("{expression:<22} => {}", spec(expression)))
            .join("\n"),
            @r"
        * * * * *              => *-*-* *:*:00
        */15 * * * *           => *-*-* *:0/15:00
        5 4 * * *              => *-*-* 4:5:00
        0 9-17/2 * * mon-fri   => Mon..Fri *-*-* 9..17/2:0:00
        30 2 1,15 * *          => *-*-1,15 2:30:00
        0 0 1 */3 *            => *-1/3-1 0:0:00
        0 3 * jan,jul sun      => Sun *-1,7-* 3:0:00
        0 0 * * 5-7            => Fri..Sun *-*-* 0:0:00
        0 0 * * 0,1,2,4        => Mon,Tue,Thu,Sun *-*-* 0:0:00
        0 12 13 * 5            => *-*-13 12:0:00 | Fri *-*-* 12:0:00
        0 0 * * */2            => Tue,Thu,Sat,Sun *-*-* 0:0:00
        @weekly                => Sun *-*-* 0:0:00
        10/20 * * * *          => *-*-* *:10/20:00
        "
        );
    }

    #[test]
    fn what_systemd_cannot_say_is_refused() {
        insta::assert_snapshot!(
            "refused",
            [
                "0 0 L * *",
                "0 0 * * 5#2",
                "0 0 15W * *",
                "0 0 * *",
                "@reboot",
                "0 25 * * *",
                "0 0 * * 5-2",
                "*/0 * * * *"
            ]
            .map(|expression| format!("{expression:<14} => {}", parse(expression).unwrap_err()))
            .join("\n")
        );
    }
}
