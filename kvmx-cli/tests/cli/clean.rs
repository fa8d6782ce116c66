//! `kvmx mat`, `kvmx pdf-cleaner` and `kvmx clamav` with a real sanitizer
//! template built from examples/sanitizer, each command in its own
//! throwaway guest. The results are read on the host with real readers
//! (pdfinfo, pdfimages, exiftool); the fixtures are made here.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Sandbox, output_text};

/// The example's kvmx.toml, made fit for a test: TCG, no provisioning
/// (it fetches ClamAV's signatures from the network), and the test's own
/// signature folder.
fn sanitizer_template(sandbox: &Sandbox) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sanitizer/kvmx.toml");
    let mut config: toml::Table = std::fs::read_to_string(example).unwrap().parse().unwrap();
    config.remove("provision");
    let table = |config: &mut toml::Table, name: &str| -> toml::Table {
        config
            .get(name)
            .and_then(|t| t.as_table())
            .cloned()
            .unwrap_or_default()
    };
    let mut hardware = table(&mut config, "hardware");
    hardware.insert("accelerator".into(), "tcg".into());
    config.insert("hardware".into(), hardware.into());
    let mut disposable = table(&mut config, "disposable");
    disposable.insert("clamav_database".into(), "signatures".into());
    config.insert("disposable".into(), disposable.into());
    config.insert(
        "supervise".into(),
        toml::toml! { boot_timeout = 600 shutdown_timeout = 120 }.into(),
    );
    let project = sandbox.dir("sanitizer");
    std::fs::write(project.join("kvmx.toml"), config.to_string()).unwrap();
    project
}

/// A one-page PDF with an /Info dictionary and JavaScript run on opening,
/// written by hand with a correct cross-reference table.
fn pdf_with_metadata_and_javascript() -> Vec<u8> {
    let content = "BT /F1 24 Tf 20 100 Td (Hello from kvmx) Tj ET";
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 5 0 R \
         /Resources << /Font << /F1 6 0 R >> >> >>"
            .to_owned(),
        "<< /S /JavaScript /JS (app.alert\\('kvmx test script'\\);) >>".to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
        "<< /Author (Kvmx Test Author) /Title (Kvmx Secret Title) >>".to_owned(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (index, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend(format!("{} 0 obj\n{object}\nendobj\n", index + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        pdf.extend(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R /Info 7 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

/// Runs a host tool and returns its stdout; it must succeed.
fn host_tool(program: &str, args: &[&Path]) -> String {
    let output = Command::new(program).args(args).output().unwrap();
    let (stdout, stderr) = output_text(&output);
    assert!(output.status.success(), "{program} {args:?}: {stderr}");
    stdout
}

/// `kvmx ARGS` in `cwd`: its exit code, stdout and stderr.
fn kvmx(sandbox: &Sandbox, cwd: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = sandbox.kvmx_in(cwd).args(args).output().unwrap();
    let (stdout, stderr) = output_text(&output);
    (output.status.code(), stdout, stderr)
}

/// The page count in pdfinfo's output.
fn pages(info: &str) -> &str {
    info.lines()
        .find_map(|line| line.strip_prefix("Pages:"))
        .map_or("", str::trim)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn files_are_cleaned_and_scanned_in_throwaway_guests() {
    let sandbox = Sandbox::new();
    let template = sanitizer_template(&sandbox);
    let work = sandbox.dir("work");
    let template_arg = template.to_str().unwrap();
    // The template's image is built by its first start.
    for step in ["up", "stop"] {
        let (code, stdout, stderr) = kvmx(&sandbox, &template, &[step]);
        assert_eq!(code, Some(0), "kvmx {step}:\n{stdout}\n{stderr}");
    }

    // Fixtures: a PDF with metadata and JavaScript, a JPEG with EXIF.
    let pdf = work.join("report.pdf");
    std::fs::write(&pdf, pdf_with_metadata_and_javascript()).unwrap();
    let info = host_tool("pdfinfo", &[&pdf]);
    assert!(info.contains("Kvmx Test Author"), "{info}");
    host_tool(
        "pdftoppm",
        &[
            Path::new("-jpeg"),
            Path::new("-singlefile"),
            &pdf,
            &work.join("photo"),
        ],
    );
    let photo = work.join("photo.jpg");
    host_tool(
        "exiftool",
        &[
            Path::new("-overwrite_original"),
            Path::new("-Artist=Kvmx Test Artist"),
            &photo,
        ],
    );
    assert!(host_tool("exiftool", &[&photo]).contains("Kvmx Test Artist"));
    let pdf_before = std::fs::read(&pdf).unwrap();
    let photo_before = std::fs::read(&photo).unwrap();

    // mat: both files in one throwaway guest.
    let (code, stdout, stderr) = kvmx(
        &sandbox,
        &work,
        &["--json", "mat", template_arg, "report.pdf", "photo.jpg"],
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let cleaned: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        cleaned[0]["result"],
        work.join("report.cleaned.pdf").to_str().unwrap()
    );
    assert_eq!(
        cleaned[1]["result"],
        work.join("photo.cleaned.jpg").to_str().unwrap()
    );
    let info = host_tool("pdfinfo", &[&work.join("report.cleaned.pdf")]);
    assert!(
        !info.contains("Kvmx Test Author") && !info.contains("Kvmx Secret Title"),
        "{info}"
    );
    assert_eq!(pages(&info), "1", "{info}");
    let exif = host_tool("exiftool", &[&work.join("photo.cleaned.jpg")]);
    assert!(!exif.contains("Kvmx Test Artist"), "{exif}");
    assert!(exif.contains("JPEG"), "{exif}");
    assert_eq!(
        std::fs::read(&pdf).unwrap(),
        pdf_before,
        "the original is untouched"
    );
    assert_eq!(
        std::fs::read(&photo).unwrap(),
        photo_before,
        "the original is untouched"
    );

    // A result is never overwritten; nothing boots to find that out.
    std::fs::write(work.join("report.cleaned.pdf"), "kept").unwrap();
    let (code, _, stderr) = kvmx(&sandbox, &work, &["mat", template_arg, "report.pdf"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("report.cleaned.pdf already exists"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(work.join("report.cleaned.pdf")).unwrap(),
        "kept"
    );

    // pdf-cleaner: page images, no JavaScript; a file that is no PDF fails
    // with the tool's own words and leaves nothing behind.
    std::fs::write(work.join("fake.pdf"), "not a PDF at all\n").unwrap();
    assert!(
        contains(&pdf_before, "/JavaScript"),
        "the fixture has a script"
    );
    let (code, stdout, stderr) = kvmx(
        &sandbox,
        &work,
        &["pdf-cleaner", template_arg, "report.pdf", "fake.pdf"],
    );
    let flattened = work.join("report.flattened.pdf");
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert_eq!(stdout, format!("{}\n", flattened.display()));
    assert!(
        stderr.contains("pdftoppm and img2pdf failed on"),
        "{stderr}"
    );
    assert!(stderr.contains("fake.pdf"), "{stderr}");
    let bytes = std::fs::read(&flattened).unwrap();
    assert!(!contains(&bytes, "JavaScript") && !contains(&bytes, "/JS"));
    assert!(!contains(&bytes, "Kvmx Test Author"));
    let images = host_tool("pdfimages", &[Path::new("-list"), &flattened]);
    assert_eq!(
        images.lines().count(),
        3,
        "one image on one page:\n{images}"
    );
    assert_eq!(pages(&host_tool("pdfinfo", &[&flattened])), "1");
    let mut left: Vec<String> = std::fs::read_dir(&work)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "fake.pdf",
            "photo.cleaned.jpg",
            "photo.jpg",
            "report.cleaned.pdf",
            "report.flattened.pdf",
            "report.pdf"
        ]
    );

    // clamav: a signature database made for a test file.
    let sample = b"kvmx clamav test sample: not a virus, only a known digest\n";
    let folder = sandbox.dir("scan/infected/deeper");
    std::fs::write(folder.join("sample.bin"), sample).unwrap();
    let digest = host_tool("md5sum", &[&folder.join("sample.bin")]);
    let digest = digest.split_whitespace().next().unwrap();
    std::fs::create_dir_all(template.join("signatures")).unwrap();
    std::fs::write(
        template.join("signatures/test.hdb"),
        format!("{digest}:{}:Kvmx.Test.Sample\n", sample.len()),
    )
    .unwrap();
    let clean_folder = sandbox.dir("scan/clean");
    std::fs::write(clean_folder.join("notes.txt"), "nothing to see\n").unwrap();

    let scan_root = sandbox.root().join("scan");
    let (code, stdout, stderr) = kvmx(
        &sandbox,
        &scan_root,
        &["clamav", template_arg, "clean", "infected"],
    );
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert_eq!(
        stdout,
        format!(
            "{}: Kvmx.Test.Sample.UNOFFICIAL\n",
            scan_root.join("infected/deeper/sample.bin").display()
        )
    );
    assert!(stderr.contains("ClamAV found 1 infected file"), "{stderr}");

    let (code, stdout, stderr) = kvmx(
        &sandbox,
        &scan_root,
        &["--json", "clamav", template_arg, "clean"],
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let scan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(scan["found"], serde_json::json!([]));
    assert_eq!(scan["scanned"][0], clean_folder.to_str().unwrap());
}
