//! The static HTML report: an index of jobs with their history, and a page
//! per run.
//!
//! Plain files with inline CSS and no JavaScript, so they can be served by
//! anything or opened from disk: `index.html` holds one table per job, a
//! row per run coloured by its result, and `<job>/<id>.html` a run's steps
//! and its combined log. Every text that comes from a job, a source or a
//! log goes through [`escape`]. Each page is written whole or not at all;
//! a folder is only written into when it is empty or holds a report of
//! kvmx-ci, and only kvmx-ci's own pages in it are replaced or removed.

use std::fmt::Write as _;
use std::io::ErrorKind;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::atomic_file::{self, Overwrite};

use crate::Error;
use crate::store::{RunRecord, Runs, StepRecord};

/// Marks a page as written by kvmx-ci.
const GENERATOR: &str = r#"<meta name="generator" content="kvmx-ci">"#;

/// The end of a log shown on a run's page; the log file has all of it.
const LOG_SHOWN: usize = 1024 * 1024;

/// What keeps the report from being written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The folder holds files that are not a report of kvmx-ci.
    #[error(
        "{dir} is not empty and holds no report of kvmx-ci; choose an empty or new folder, or ask to write into it anyway"
    )]
    NotAReport {
        /// The folder.
        dir: Utf8PathBuf,
    },
    /// A job's name cannot be a folder of the report.
    #[error("the job name {job:?} cannot name a folder of the report; rename its job file")]
    BadJobName {
        /// The name.
        job: String,
    },
    /// A page could not be written.
    #[error(transparent)]
    Write(#[from] kvmx_core::Error),
}

/// Whether a folder that holds files which are not a report of kvmx-ci
/// may be written into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// Refuse it.
    Refuse,
    /// Write into it anyway (still replacing only kvmx-ci's pages).
    Allow,
}

/// Writes the report of `jobs` into `dir`: `index.html` and a page per
/// run. Pages of runs that no longer exist are removed. Returns the pages
/// written.
pub fn write(dir: &Utf8Path, jobs: &[Runs], foreign: Foreign) -> Result<Vec<Utf8PathBuf>, Error> {
    if foreign == Foreign::Refuse && !is_empty_or_report(dir)? {
        return Err(ReportError::NotAReport {
            dir: dir.to_owned(),
        }
        .into());
    }
    let mut histories = Vec::new();
    for runs in jobs {
        check_job_name(runs.job())?;
        let mut records = runs.list()?;
        records.reverse();
        histories.push((runs, records));
    }
    let mut written = Vec::new();
    for (runs, records) in &histories {
        let job_dir = dir.join(runs.job());
        for record in records {
            let page = job_dir.join(format!("{}.html", record.id));
            write_page(&page, &run_page(runs, record)?)?;
            written.push(page);
        }
        remove_stale_pages(&job_dir, records)?;
    }
    let index = dir.join("index.html");
    write_page(&index, &index_page(&histories))?;
    written.push(index);
    Ok(written)
}

/// Escapes `text` for HTML text and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Whether `dir` is missing, empty, or holds an index written by kvmx-ci.
fn is_empty_or_report(dir: &Utf8Path) -> Result<bool, Error> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error::io(dir)(e)),
    };
    if entries.next().is_none() {
        return Ok(true);
    }
    written_by_us(&dir.join("index.html"))
}

/// Whether `page` exists and was written by kvmx-ci.
fn written_by_us(page: &Utf8Path) -> Result<bool, Error> {
    match std::fs::read_to_string(page) {
        Ok(text) => Ok(text.contains(GENERATOR)),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidData) => Ok(false),
        Err(e) => Err(Error::io(page)(e)),
    }
}

/// A job's name becomes a folder and part of links: one plain path
/// component.
fn check_job_name(job: &str) -> Result<(), Error> {
    let plain =
        !job.is_empty() && !job.starts_with('.') && !job.contains('/') && !job.contains('\0');
    if plain {
        Ok(())
    } else {
        Err(ReportError::BadJobName {
            job: job.to_owned(),
        }
        .into())
    }
}

fn write_page(path: &Utf8Path, html: &str) -> Result<(), Error> {
    atomic_file::write(path, html.as_bytes(), Overwrite::Yes).map_err(ReportError::from)?;
    Ok(())
}

/// Removes the pages of a job's runs that are gone (pruned), but only
/// pages that kvmx-ci wrote.
fn remove_stale_pages(job_dir: &Utf8Path, records: &[RunRecord]) -> Result<(), Error> {
    let entries = match std::fs::read_dir(job_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(job_dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(Error::io(job_dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(id) = name
            .strip_suffix(".html")
            .and_then(|id| id.parse::<u64>().ok())
        else {
            continue;
        };
        let page = job_dir.join(&name);
        if records.iter().all(|r| r.id != id) && written_by_us(&page)? {
            std::fs::remove_file(&page).map_err(Error::io(page))?;
        }
    }
    Ok(())
}

/// A name as one segment of a link: what is not a letter, digit, `.`, `_`
/// or `-` is percent-encoded.
fn link_segment(name: &str) -> String {
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

const STYLE: &str = "\
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { padding: 0.3em 0.8em; text-align: left; border-bottom: 1px solid #ccc; }
th { background: #f4f4f4; }
code, pre { font-family: monospace; }
pre { background: #f8f8f8; padding: 1em; overflow-x: auto; font-size: 0.9em; }
tr.passed, td.passed { background: #d9f2d9; }
tr.failed, td.failed { background: #f7d4d4; }
tr.error, td.error { background: #ffe0b8; }
tr.rejected, td.rejected { background: #e6d5f5; }
tr.cancelled, td.cancelled { background: #e4e4e4; }
tr.running, td.running { background: #d6e6fa; }
";

/// The start of a page, up to its `<body>`.
fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n{GENERATOR}\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        escape(title)
    )
}

const FOOT: &str = "</body>\n</html>\n";

/// A duration to the second ("1m 5s"), or a dash when there is none.
fn duration_text(duration: Option<Duration>) -> String {
    match duration {
        Some(duration) => {
            humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
        }
        None => "–".to_owned(),
    }
}

/// The result, and its reason in small print: whole as a tooltip, its
/// start in the table.
fn outcome_cell(record: &RunRecord) -> String {
    const SHOWN: usize = 80;
    let Some(reason) = &record.reason else {
        return record.result.to_string();
    };
    let first_line = reason.lines().next().unwrap_or_default();
    let shown = match first_line.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &first_line[..cut]),
        None if first_line.len() < reason.len() => format!("{first_line}…"),
        None => first_line.to_owned(),
    };
    format!(
        "{} <small title=\"{}\">({})</small>",
        record.result,
        escape(reason),
        escape(&shown)
    )
}

fn signer_text(record: &RunRecord) -> String {
    if !record.verified {
        return "unverified".to_owned();
    }
    record.signer.clone().unwrap_or_else(|| "–".to_owned())
}

fn short_commit(record: &RunRecord) -> &str {
    match &record.commit {
        Some(commit) => commit.get(..12).unwrap_or(commit),
        None => "–",
    }
}

fn index_page(histories: &[(&Runs, Vec<RunRecord>)]) -> String {
    let mut html = head("kvmx-ci");
    html.push_str("<h1>kvmx-ci</h1>\n");
    if histories.is_empty() {
        html.push_str("<p>No jobs.</p>\n");
    }
    for (runs, records) in histories {
        let job = runs.job();
        let _ = writeln!(
            html,
            "<h2 id=\"job-{}\">{}</h2>",
            link_segment(job),
            escape(job)
        );
        if records.is_empty() {
            html.push_str("<p>No runs yet.</p>\n");
            continue;
        }
        html.push_str(
            "<table>\n<tr><th>run</th><th>result</th><th>started</th><th>duration</th>\
             <th>commit</th><th>signer</th></tr>\n",
        );
        for record in records {
            let _ = writeln!(
                html,
                "<tr class=\"{result}\"><td><a href=\"{link}/{id}.html\">{id}</a></td>\
                 <td>{outcome}</td><td class=\"time\">{started}</td>\
                 <td class=\"duration\">{duration}</td><td><code>{commit}</code></td>\
                 <td>{signer}</td></tr>",
                result = record.result,
                link = link_segment(job),
                id = record.id,
                outcome = outcome_cell(record),
                started = record.started,
                duration = duration_text(record.duration()),
                commit = escape(short_commit(record)),
                signer = escape(&signer_text(record)),
            );
        }
        html.push_str("</table>\n");
    }
    html.push_str(FOOT);
    html
}

fn run_page(runs: &Runs, record: &RunRecord) -> Result<String, Error> {
    let job = escape(&record.job);
    let mut html = head(&format!("{} run {}", record.job, record.id));
    let _ = writeln!(
        html,
        "<h1><a href=\"../index.html#job-{}\">{job}</a> run {}</h1>",
        link_segment(&record.job),
        record.id
    );
    html.push_str("<table>\n");
    let optional = |value: &Option<String>| escape(value.as_deref().unwrap_or("–"));
    let rows = [
        ("result", format!("{}", record.result)),
        ("reason", optional(&record.reason)),
        (
            "exit status",
            record.status.map_or("–".to_owned(), |s| s.to_string()),
        ),
        ("started", record.started.to_string()),
        (
            "finished",
            record.finished.map_or("–".to_owned(), |t| t.to_string()),
        ),
        ("duration", duration_text(record.duration())),
        (
            "commit",
            format!("<code>{}</code>", optional(&record.commit)),
        ),
        ("reference", optional(&record.reference)),
        ("signer", escape(&signer_text(record))),
        ("VM", optional(&record.vm)),
        ("kvmx-ci", escape(&record.kvmx_version)),
    ];
    for (name, value) in rows {
        let class = if name == "result" {
            format!(" class=\"{}\"", record.result)
        } else {
            String::new()
        };
        let _ = writeln!(html, "<tr><th>{name}</th><td{class}>{value}</td></tr>");
    }
    html.push_str("</table>\n<h2>Steps</h2>\n");
    steps_table(&mut html, &record.steps);
    if !record.artifacts.is_empty() {
        html.push_str("<h2>Artifacts</h2>\n<ul>\n");
        for artifact in &record.artifacts {
            let _ = writeln!(html, "<li><code>{}</code></li>", escape(artifact));
        }
        html.push_str("</ul>\n");
    }
    html.push_str("<h2>Log</h2>\n");
    let log = runs.log_file(record.id);
    let (text, cut) = log_tail(&log)?;
    if cut {
        let _ = writeln!(
            html,
            "<p>Only the end of the log is shown; all of it is in <code>{}</code>.</p>",
            escape(log.as_str())
        );
    }
    let _ = writeln!(html, "<pre>{}</pre>", escape(&text));
    html.push_str(FOOT);
    Ok(html)
}

fn steps_table(html: &mut String, steps: &[StepRecord]) {
    if steps.is_empty() {
        html.push_str("<p>No steps ran.</p>\n");
        return;
    }
    html.push_str(
        "<table>\n<tr><th>#</th><th>step</th><th>result</th><th>duration</th>\
         <th>exit status</th></tr>\n",
    );
    for (n, step) in steps.iter().enumerate() {
        let status = step.status.map_or("–".to_owned(), |s| s.to_string());
        let _ = writeln!(
            html,
            "<tr class=\"{result}\"><td>{n}</td><td>{name}</td><td>{result}</td>\
             <td class=\"duration\">{duration}</td><td>{status}</td></tr>",
            result = step.result,
            n = n + 1,
            name = escape(&step.name),
            duration = duration_text(step.duration()),
        );
    }
    html.push_str("</table>\n");
}

/// The end of a log (at most [`LOG_SHOWN`] bytes, from a line start) and
/// whether it was cut; an empty text when there is no log.
fn log_tail(log: &Utf8Path) -> Result<(String, bool), Error> {
    let bytes = match std::fs::read(log) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok((String::new(), false)),
        Err(e) => return Err(Error::io(log)(e)),
    };
    if bytes.len() <= LOG_SHOWN {
        return Ok((String::from_utf8_lossy(&bytes).into_owned(), false));
    }
    let tail = &bytes[bytes.len() - LOG_SHOWN..];
    let start = tail.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    Ok((String::from_utf8_lossy(&tail[start..]).into_owned(), true))
}

#[cfg(test)]
mod tests;
