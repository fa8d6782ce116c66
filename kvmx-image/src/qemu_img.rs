//! `qemu-img` for every crate: qcow2 overlays on a backing image, copies,
//! and what an overlay is backed by. Each call runs through a
//! [`Runner`], so it has a deadline, obeys the cancel flag and keeps
//! `qemu-img`'s complaint in its error.

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::config::ImageFormat;
use kvmx_core::process::{Runner, Tool};

use crate::Result;

/// Makes `overlay`, a qcow2 image whose reads fall through to `backing`
/// (of `backing_format`) until written.
pub fn create_overlay(
    runner: &Runner,
    overlay: &Utf8Path,
    backing: &Utf8Path,
    backing_format: ImageFormat,
) -> Result<()> {
    runner.run(
        &Tool::new("qemu-img", "create the overlay")
            .args([
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                backing_format.as_str(),
                "-b",
            ])
            .arg(backing)
            .arg(overlay),
    )?;
    Ok(())
}

/// Makes `image`, a blank disk of `format` and `bytes` bytes.
pub fn create(runner: &Runner, image: &Utf8Path, format: ImageFormat, bytes: u64) -> Result<()> {
    runner.run(
        &Tool::new("qemu-img", "create the blank disk")
            .args(["create", "-q", "-f", format.as_str()])
            .arg(image)
            .arg(bytes.to_string()),
    )?;
    Ok(())
}

/// Copies `source` (of `from`) to a new image `target` in `to`.
pub fn convert(
    runner: &Runner,
    source: &Utf8Path,
    from: ImageFormat,
    target: &Utf8Path,
    to: ImageFormat,
) -> Result<()> {
    runner.run(
        &Tool::new("qemu-img", "copy the image")
            .args(["convert", "-f", from.as_str(), "-O", to.as_str()])
            .arg(source)
            .arg(target),
    )?;
    Ok(())
}

/// The image `overlay` is backed by, and its format; `None` for an image
/// that has no backing file.
pub fn backing_of(
    runner: &Runner,
    overlay: &Utf8Path,
) -> Result<Option<(Utf8PathBuf, ImageFormat)>> {
    let info = runner.run(
        &Tool::new("qemu-img", "read the image's backing file")
            .args(["info", "-U", "--output=json"])
            .arg(overlay),
    )?;
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap_or_default();
    let Some(backing) = info["full-backing-filename"]
        .as_str()
        .or(info["backing-filename"].as_str())
    else {
        return Ok(None);
    };
    let format = match info["backing-filename-format"].as_str() {
        Some("raw") => ImageFormat::Raw,
        _ => ImageFormat::Qcow2,
    };
    Ok(Some((backing.into(), format)))
}

#[cfg(test)]
mod tests {
    use kvmx_core::CancelFlag;

    use super::*;

    #[test]
    fn an_overlay_knows_its_backing_image() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let runner = Runner::unlogged(CancelFlag::new());
        let base = dir.join("base.raw");
        std::fs::File::create(&base)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let overlay = dir.join("overlay.qcow2");
        create_overlay(&runner, &overlay, &base, ImageFormat::Raw).unwrap();
        assert_eq!(
            backing_of(&runner, &overlay).unwrap(),
            Some((base.clone(), ImageFormat::Raw))
        );
        assert_eq!(backing_of(&runner, &base).unwrap(), None);
        let copy = dir.join("copy.qcow2");
        convert(
            &runner,
            &overlay,
            ImageFormat::Qcow2,
            &copy,
            ImageFormat::Qcow2,
        )
        .unwrap();
        assert_eq!(backing_of(&runner, &copy).unwrap(), None);
    }

    #[test]
    fn a_failure_keeps_what_qemu_img_said() {
        let runner = Runner::unlogged(CancelFlag::new());
        let error = backing_of(&runner, Utf8Path::new("/nonexistent/image")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/image"), "{error}");
    }
}
