//! Cleaning files in a guest: metadata removal with mat2, PDFs flattened
//! to page images, virus scans with ClamAV.
//!
//! Each file is copied into a temporary folder in the guest under a fixed
//! name (so no host file name reaches the guest's shell), the tool runs
//! there, and only its result is copied back: to a temporary file beside
//! the original, renamed to its final name only when complete and never
//! over an existing file. The original is only read.
//!
//! [`clean_in`] and [`scan_in`] work in any running VM; `kvmx mat`,
//! `pdf-cleaner` and `clamav` run them in a disposable (see
//! [`crate::disposable`]) with no network and no shares.

use std::io::ErrorKind;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::guest::{Collected, Discard, Guest, Stream, quote};
use crate::{Error, Vm};
use kvmx_core::observe::{Observer, Stages};

/// How many lines of a failing tool's output an error carries.
const TOOL_LINES: usize = 30;

/// A tool that makes a clean copy of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleaner {
    /// `mat2`: the file without its metadata, as `NAME.cleaned.EXT`.
    Mat,
    /// Each page of a PDF rendered to pixels (`pdftoppm`) and a new PDF
    /// made of the images (`img2pdf`), as `NAME.flattened.pdf`.
    Flatten,
}

impl Cleaner {
    /// The tool, for messages.
    pub fn tool(self) -> &'static str {
        match self {
            Cleaner::Mat => "mat2",
            Cleaner::Flatten => "pdftoppm and img2pdf",
        }
    }

    /// Where the result of cleaning `file` goes: beside it, with the
    /// cleaner's mark before the extension.
    pub fn target(self, file: &Utf8Path) -> Utf8PathBuf {
        let stem = file.file_stem().unwrap_or("file");
        let name = match (self, file.extension()) {
            (Cleaner::Mat, Some(extension)) => format!("{stem}.cleaned.{extension}"),
            (Cleaner::Mat, None) => format!("{stem}.cleaned"),
            (Cleaner::Flatten, _) => format!("{stem}.flattened.pdf"),
        };
        file.with_file_name(name)
    }

    /// The guest's name for the copy of the `index`th file: fixed, keeping
    /// a plain extension (mat2 picks its parser by the extension).
    fn input_name(self, file: &Utf8Path, index: usize) -> String {
        match (self, file.extension()) {
            (Cleaner::Mat, Some(ext)) if ext.chars().all(|c| c.is_ascii_alphanumeric()) => {
                format!("{index}.{ext}")
            }
            (Cleaner::Mat, _) => index.to_string(),
            (Cleaner::Flatten, _) => format!("{index}.pdf"),
        }
    }

    /// The shell command that cleans the `index`th file, named `input`, in
    /// the current folder, and the name of the file it writes.
    fn command(self, index: usize, input: &str) -> (String, String) {
        match self {
            Cleaner::Mat => {
                let output = match input.split_once('.') {
                    Some((stem, ext)) => format!("{stem}.cleaned.{ext}"),
                    None => format!("{input}.cleaned"),
                };
                (format!("mat2 {input}"), output)
            }
            Cleaner::Flatten => (
                format!(
                    "pdftoppm -r 150 -png {input} {index}-page && \
                     img2pdf {index}-page-*.png -o {index}.flattened.pdf"
                ),
                format!("{index}.flattened.pdf"),
            ),
        }
    }
}

/// A file and its clean copy, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cleaned {
    /// The original, untouched.
    pub file: Utf8PathBuf,
    /// The clean copy beside it.
    pub result: Option<Utf8PathBuf>,
    /// Why the tool failed on this file (the others are still cleaned).
    pub error: Option<String>,
}

/// Checks, before any work, that every file exists and that no result
/// would overwrite a file.
pub fn check_targets(cleaner: Cleaner, files: &[Utf8PathBuf]) -> Result<(), Error> {
    check_inputs(files, false)?;
    for file in files {
        let target = cleaner.target(file);
        if target.symlink_metadata().is_ok() {
            return Err(Error::TargetExists { path: target });
        }
    }
    Ok(())
}

/// Fails unless every path is a file (or, with `folders`, a folder).
fn check_inputs(paths: &[Utf8PathBuf], folders: bool) -> Result<(), Error> {
    for path in paths {
        if !(path.is_file() || folders && path.is_dir()) {
            let what = if folders { "file or folder" } else { "file" };
            return Err(Error::Usage(format!("there is no {what} at {path}")));
        }
    }
    Ok(())
}

/// Cleans each of `files` in the running `vm`, writing each result beside
/// its original. A file the tool fails on gets an error and no result; a
/// failure to reach the guest ends the work.
pub fn clean_in(
    vm: &Vm,
    cleaner: Cleaner,
    files: &[Utf8PathBuf],
    observer: &mut dyn Observer,
) -> Result<Vec<Cleaned>, Error> {
    let mut progress = Stages::new(observer);
    check_targets(cleaner, files)?;
    in_guest_folder(vm, |guest, work| {
        let mut cleaned = Vec::new();
        for (index, file) in files.iter().enumerate() {
            progress.stage(&format!("{} on {file}", cleaner.tool()));
            let (result, error) = match clean_one(guest, work, cleaner, index, file) {
                Ok(result) => (Some(result), None),
                Err(error @ (Error::Tool { .. } | Error::TargetExists { .. })) => {
                    (None, Some(error.to_string()))
                }
                Err(error) => return Err(error),
            };
            cleaned.push(Cleaned {
                file: file.clone(),
                result,
                error,
            });
        }
        Ok(cleaned)
    })
}

/// Cleans the `index`th file in the guest folder `work`; returns where the
/// result went.
fn clean_one(
    guest: &Guest,
    work: &str,
    cleaner: Cleaner,
    index: usize,
    file: &Utf8Path,
) -> Result<Utf8PathBuf, Error> {
    let input = cleaner.input_name(file, index);
    upload(guest, file, &format!("{work}/{input}"))?;
    let (command, output) = cleaner.command(index, &input);
    checked(
        |said| guest.run(&format!("cd {work} && {command}"), said),
        || format!("{} failed on {file}", cleaner.tool()),
    )?;
    let result = cleaner.target(file);
    download_beside(guest, &format!("{work}/{output}"), file, &result)?;
    Ok(result)
}

/// A file ClamAV flagged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// The host path of the file.
    pub path: Utf8PathBuf,
    /// The signature that matched.
    pub signature: String,
}

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scan {
    /// The files and folders scanned.
    pub scanned: Vec<Utf8PathBuf>,
    /// The infected files, in ClamAV's order.
    pub found: Vec<Found>,
}

/// Scans `paths` (files or folders, recursively) with `clamscan` in the
/// running `vm`, with the signatures of the host folder `database` or,
/// without one, the guest's own.
pub fn scan_in(
    vm: &Vm,
    paths: &[Utf8PathBuf],
    database: Option<&Utf8Path>,
    observer: &mut dyn Observer,
) -> Result<Scan, Error> {
    let mut progress = Stages::new(observer);
    check_scan(paths, database)?;
    in_guest_folder(vm, |guest, work| {
        progress.stage("copying in");
        let mut command = "clamscan -r --infected --no-summary".to_owned();
        if let Some(database) = database {
            upload(guest, database, &format!("{work}/signatures"))?;
            command.push_str(&format!(" --database={work}/signatures"));
        }
        command.push_str(" --");
        for (index, path) in paths.iter().enumerate() {
            upload(guest, path, &format!("{work}/{index}"))?;
            command.push_str(&format!(" {work}/{index}"));
        }
        progress.stage("clamscan");
        let mut said = Collected::default();
        let status = guest.run(&command, &mut said)?;
        let found: Vec<Found> = said
            .lines
            .iter()
            .filter(|(stream, _)| *stream == Stream::Stdout)
            .filter_map(|(_, line)| found_on_host(line, work, paths))
            .collect();
        // clamscan: 0 nothing found, 1 something found, 2 an error.
        match status.code() {
            Some(0) => {}
            Some(1) if !found.is_empty() => {}
            _ if said
                .tail(TOOL_LINES)
                .contains("No supported database files found") =>
            {
                return Err(Error::NoSignatures);
            }
            _ => {
                return Err(Error::Tool {
                    what: format!("clamscan failed ({status})"),
                    output: said.tail(TOOL_LINES),
                });
            }
        }
        Ok(Scan {
            scanned: paths.to_vec(),
            found,
        })
    })
}

/// Checks, before any work, that the paths and the signature folder exist.
pub fn check_scan(paths: &[Utf8PathBuf], database: Option<&Utf8Path>) -> Result<(), Error> {
    check_inputs(paths, true)?;
    match database {
        Some(database) if !database.is_dir() => Err(Error::NoSignatureFolder {
            folder: database.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// A clamscan line `WORK/INDEX[/REST]: SIGNATURE FOUND`, with the guest
/// path turned back into the host path it was copied from.
fn found_on_host(line: &str, work: &str, paths: &[Utf8PathBuf]) -> Option<Found> {
    let (guest, signature) = line.strip_suffix(" FOUND")?.rsplit_once(": ")?;
    let relative = guest.strip_prefix(work)?.strip_prefix('/')?;
    let (index, rest) = relative.split_once('/').unwrap_or((relative, ""));
    let host = paths.get(index.parse::<usize>().ok()?)?;
    Some(Found {
        path: if rest.is_empty() {
            host.clone()
        } else {
            host.join(rest)
        },
        signature: signature.to_owned(),
    })
}

/// Runs `work` with a new temporary folder in the guest, and removes the
/// folder afterwards, whatever the result.
fn in_guest_folder<T>(
    vm: &Vm,
    work: impl FnOnce(&Guest, &str) -> Result<T, Error>,
) -> Result<T, Error> {
    let guest = vm.guest()?;
    let folder = guest.make_temp(true)?;
    let result = work(&guest, &folder);
    let removed = guest.run(&format!("rm -rf {}", quote(&folder)), &mut Discard);
    let value = result?;
    removed?;
    Ok(value)
}

/// Copies host `source` (a file or a folder) to the guest path
/// `destination`.
fn upload(guest: &Guest, source: &Utf8Path, destination: &str) -> Result<(), Error> {
    checked(
        |said| guest.copy_to(source, destination, said),
        || format!("copying {source} into the guest failed"),
    )
}

/// Runs a step in the guest (a command or a copy) with its output
/// collected; unless it succeeds, fails with `what` and the end of the
/// output.
fn checked(
    step: impl FnOnce(&mut Collected) -> Result<std::process::ExitStatus, Error>,
    what: impl FnOnce() -> String,
) -> Result<(), Error> {
    let mut said = Collected::default();
    let status = step(&mut said)?;
    if status.success() {
        return Ok(());
    }
    Err(Error::Tool {
        what: format!("{} ({status})", what()),
        output: said.tail(TOOL_LINES),
    })
}

/// Copies the guest file `source` to a temporary file beside `original`
/// (with its permissions), then gives it the name `target`, failing if
/// that name is taken.
fn download_beside(
    guest: &Guest,
    source: &str,
    original: &Utf8Path,
    target: &Utf8Path,
) -> Result<(), Error> {
    let folder = target.parent().unwrap_or(Utf8Path::new("."));
    let partial = tempfile::Builder::new()
        .prefix(&format!(".{}.", target.file_name().unwrap_or("result")))
        .suffix(".part")
        .tempfile_in(folder)
        .map_err(Error::io("create a file in", folder))?
        .into_temp_path();
    let partial_path = Utf8Path::from_path(&partial).expect("a UTF-8 folder and name");
    checked(
        |said| guest.copy_from(source, partial_path, said),
        || format!("copying the result for {original} out of the guest failed"),
    )?;
    let permissions = original
        .metadata()
        .map_err(Error::io("read", original))?
        .permissions();
    std::fs::set_permissions(partial_path, permissions)
        .map_err(Error::io("set the permissions of", partial_path))?;
    // A hard link never replaces an existing file, unlike a rename.
    match std::fs::hard_link(partial_path, target) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == ErrorKind::AlreadyExists => Err(Error::TargetExists {
            path: target.to_owned(),
        }),
        Err(error) => Err(Error::io("write", target)(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_named_beside_the_original() {
        let target = |cleaner: Cleaner, file: &str| cleaner.target(file.into()).into_string();
        assert_eq!(
            target(Cleaner::Mat, "/d/report.pdf"),
            "/d/report.cleaned.pdf"
        );
        assert_eq!(target(Cleaner::Mat, "notes"), "notes.cleaned");
        assert_eq!(
            target(Cleaner::Mat, "a.tar.gz"),
            "a.tar.cleaned.gz",
            "as mat2 names it"
        );
        assert_eq!(
            target(Cleaner::Flatten, "/d/report.pdf"),
            "/d/report.flattened.pdf"
        );
        assert_eq!(target(Cleaner::Flatten, "scan"), "scan.flattened.pdf");
    }

    #[test]
    fn guest_names_are_fixed() {
        assert_eq!(Cleaner::Mat.input_name("My Photo.JPG".into(), 0), "0.JPG");
        assert_eq!(Cleaner::Mat.input_name("x.$(id)".into(), 1), "1");
        assert_eq!(Cleaner::Flatten.input_name("a b".into(), 2), "2.pdf");
        assert_eq!(
            Cleaner::Mat.command(0, "0.jpg"),
            ("mat2 0.jpg".to_owned(), "0.cleaned.jpg".to_owned())
        );
        assert_eq!(Cleaner::Mat.command(1, "1").1, "1.cleaned");
        assert_eq!(Cleaner::Flatten.command(2, "2.pdf").1, "2.flattened.pdf");
    }

    #[test]
    fn clamscan_lines_map_back_to_host_paths() {
        let paths = vec![Utf8PathBuf::from("/h/file.exe"), "/h/folder".into()];
        let work = "/tmp/kvmx-run.ab";
        assert_eq!(
            found_on_host("/tmp/kvmx-run.ab/0: Eicar-Signature FOUND", work, &paths),
            Some(Found {
                path: "/h/file.exe".into(),
                signature: "Eicar-Signature".into()
            })
        );
        assert_eq!(
            found_on_host(
                "/tmp/kvmx-run.ab/1/sub/x: y.z: Test.UNOFFICIAL FOUND",
                work,
                &paths
            )
            .unwrap()
            .path,
            "/h/folder/sub/x: y.z"
        );
        assert_eq!(
            found_on_host("/tmp/kvmx-run.ab/2: S FOUND", work, &paths),
            None
        );
        assert_eq!(found_on_host("LibClamAV Warning: old", work, &paths), None);
    }
}
