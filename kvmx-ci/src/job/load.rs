//! Reading job files: one file, every file of the jobs folder, or one job
//! by its name.

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::Layout;
use kvmx_core::config::{ConfigError, locate_problem, toml_error};

use super::{Job, check};
use crate::{Error, paths};

impl Job {
    /// Reads and checks a job file; its name is the file stem.
    pub fn load(file: &Utf8Path) -> Result<Job, Error> {
        let text = std::fs::read_to_string(file).map_err(Error::io(file))?;
        Job::parse(&text, file)
    }

    /// Parses and checks the text of a job file; `file` names the job (its
    /// stem), the file in errors, and the folder relative paths are
    /// resolved against.
    pub fn parse(text: &str, file: &Utf8Path) -> Result<Job, Error> {
        let name = job_name(file)?;
        if let Some(problem) = check::schedule_shape(text) {
            return Err(locate_problem(text, file, problem).into());
        }
        let mut job: Job = toml::from_str(text).map_err(|e| toml_error(text, file, &e))?;
        if let Some(problem) = check::problems(&job).into_iter().next() {
            return Err(locate_problem(text, file, problem).into());
        }
        job.name = name;
        job.file = file.to_owned();
        check::normalize(&mut job);
        resolve_paths(&mut job, file.parent().unwrap_or(Utf8Path::new("")));
        Ok(job)
    }
}

/// Every job of the jobs folder, sorted by name; the first file that cannot
/// be read or checked is the error. No folder: no jobs.
pub fn load_all(layout: &Layout) -> Result<Vec<Job>, Error> {
    job_files(&paths::jobs_dir(layout))?
        .iter()
        .map(|file| Job::load(file))
        .collect()
}

/// Every job file of the jobs folder, sorted by name, each with its job or
/// what is wrong with it (for `kvmx-ci check`).
pub fn check_all(layout: &Layout) -> Vec<(Utf8PathBuf, Result<Job, Error>)> {
    let dir = paths::jobs_dir(layout);
    match job_files(&dir) {
        Ok(files) => files
            .into_iter()
            .map(|file| {
                let job = Job::load(&file);
                (file, job)
            })
            .collect(),
        Err(error) => vec![(dir, Err(error))],
    }
}

/// The job called `name`; an unknown name is an error that names the
/// folder, lists the jobs and suggests the closest name.
pub fn find(layout: &Layout, name: &str) -> Result<Job, Error> {
    let dir = paths::jobs_dir(layout);
    if check_name(name).is_ok() {
        let file = dir.join(format!("{name}.toml"));
        if file.is_file() {
            return Job::load(&file);
        }
    }
    let known: Vec<String> = job_files(&dir)?
        .iter()
        .filter_map(|file| file.file_stem().map(str::to_owned))
        .collect();
    let suggestion = known
        .iter()
        .map(|known| (strsim::jaro_winkler(name, known), known))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, known)| known.clone());
    Err(Error::UnknownJob {
        name: name.to_owned(),
        dir,
        known,
        suggestion,
    })
}

/// The `*.toml` files of `dir`, sorted; none when it does not exist.
fn job_files(dir: &Utf8Path) -> Result<Vec<Utf8PathBuf>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::io(dir)(error)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(Error::io(dir))?.path();
        // A file name that is not UTF-8 cannot be a job's name; the
        // error of its check says so.
        let path = Utf8PathBuf::from_path_buf(path)
            .unwrap_or_else(|path| Utf8PathBuf::from(path.to_string_lossy().into_owned()));
        if path.extension() == Some("toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The job's name: the file stem, if it is a valid name.
fn job_name(file: &Utf8Path) -> Result<String, Error> {
    let stem = file.file_stem().unwrap_or_default();
    check_name(stem).map_err(|message| ConfigError {
        file: file.to_owned(),
        line: 0,
        column: 0,
        message,
        source_line: None,
        hint: Some("rename the file: its name without `.toml` is the job's name".to_owned()),
    })?;
    Ok(stem.to_owned())
}

/// A job's name is used in file names, unit names and on the command
/// line: ASCII letters, digits, `-`, `_` and `.`, starting with a letter or
/// a digit (so that it is neither hidden nor taken for an option).
fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    let starts_well = name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if starts_well && name.chars().all(allowed) && name.len() <= 200 {
        Ok(())
    } else {
        Err(format!(
            "invalid job name `{name}`: use ASCII letters, digits, `-`, `_` and `.`, \
             starting with a letter or a digit, at most 200 characters"
        ))
    }
}

/// Makes the job's relative host paths relative to its file's folder.
fn resolve_paths(job: &mut Job, folder: &Utf8Path) {
    let source = &mut job.source;
    for path in [&mut source.allowed_signers, &mut source.keyring]
        .into_iter()
        .flatten()
    {
        if path.is_relative() {
            *path = folder.join(&*path);
        }
    }
    if is_local_path(&source.url) && Utf8Path::new(&source.url).is_relative() {
        source.url = folder.join(&source.url).into_string();
    }
}

/// Whether git reads `url` as a local path: not `scheme://...` and not the
/// scp-like `host:path` (a colon before the first slash).
fn is_local_path(url: &str) -> bool {
    if url.contains("://") {
        return false;
    }
    match (url.find(':'), url.find('/')) {
        (Some(colon), Some(slash)) => slash < colon,
        (Some(_), None) => false,
        (None, _) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_are_told_apart() {
        assert!(is_local_path("../repo"));
        assert!(is_local_path("repo.git"));
        assert!(is_local_path("/srv/git/repo"));
        assert!(is_local_path("./a:b"));
        assert!(!is_local_path("file:///srv/git/repo"));
        assert!(!is_local_path("https://example.org/repo.git"));
        assert!(!is_local_path("git@example.org:team/repo.git"));
        assert!(!is_local_path("host:repo"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("nightly-build_2.x").is_ok());
        for bad in ["", ".hidden", "-x", "a b", "é", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
