//! Crafted layers against the unpacker: escapes refused, ordinary entries kept.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::ImageError;
use super::unpack::unpack_reader;

/// A tar entry whose name is written raw (the tar crate's own builder refuses `..`).
fn entry(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut header = tar::Header::new_old();
    {
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    builder.append(&header, data).expect("append");
}

fn layer(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    build(&mut builder);
    builder.into_inner().expect("tar")
}

fn unpack_into(dir: &Path, bytes: &[u8]) -> Result<u64, ImageError> {
    unpack_reader(bytes, dir, false)
}

use tar::EntryType::{Directory, Link, Regular, Symlink};

#[test]
fn dot_dot_entries_are_refused() {
    let outside = tempfile::tempdir().expect("tmp");
    let dest = outside.path().join("layer");
    std::fs::create_dir(&dest).expect("mkdir");
    let bytes = layer(|b| entry(b, "a/../../escaped", Regular, "", b"x"));
    let err = unpack_into(&dest, &bytes).expect_err("refused");
    assert!(
        matches!(err, ImageError::BadLayer(ref m) if m.contains("..")),
        "{err}"
    );
    assert!(!outside.path().join("escaped").exists());
}

#[test]
fn writes_through_a_planted_absolute_symlink_are_refused() {
    let outside = tempfile::tempdir().expect("tmp");
    let target = outside.path().join("victim");
    std::fs::create_dir(&target).expect("mkdir");
    let dest = outside.path().join("layer");
    std::fs::create_dir(&dest).expect("mkdir");
    let link = target.to_str().expect("utf-8");
    let bytes = layer(|b| {
        entry(b, "etc", Symlink, link, b"");
        entry(b, "etc/passwd", Regular, "", b"root::0:0::/:/bin/sh\n");
    });
    let err = unpack_into(&dest, &bytes).expect_err("refused");
    assert!(
        matches!(err, ImageError::BadLayer(ref m) if m.contains("symlink")),
        "{err}"
    );
    assert!(
        !target.join("passwd").exists(),
        "nothing written through the symlink"
    );
}

#[test]
fn hard_links_out_of_the_layer_are_refused() {
    let outside = tempfile::tempdir().expect("tmp");
    std::fs::write(outside.path().join("secret"), "s").expect("write");
    let dest = outside.path().join("layer");
    std::fs::create_dir(&dest).expect("mkdir");
    let bytes = layer(|b| entry(b, "stolen", Link, "../secret", b""));
    assert!(unpack_into(&dest, &bytes).is_err());
    let bytes = layer(|b| entry(b, "stolen", Link, "/etc/hostname", b""));
    let err = unpack_into(&dest, &bytes).expect_err("refused");
    assert!(matches!(err, ImageError::BadLayer(_)), "{err}");
    assert!(!dest.join("stolen").exists());
}

#[test]
fn ordinary_entries_unpack() {
    let dest = tempfile::tempdir().expect("tmp");
    let bytes = layer(|b| {
        entry(b, "./", Directory, "", b"");
        entry(b, "bin/", Directory, "", b"");
        entry(b, "bin/tool", Regular, "", b"#!/bin/sh\necho hi\n");
        entry(b, "bin/alias", Link, "bin/tool", b"");
        entry(b, "bin/sh", Symlink, "/bin/busybox", b"");
        entry(b, "etc/deep/file", Regular, "", b"x");
        entry(b, "dev/null", tar::EntryType::Char, "", b"");
    });
    let written = unpack_into(dest.path(), &bytes).expect("unpacks");
    assert_eq!(written, 19);
    let d = dest.path();
    assert_eq!(
        std::fs::read_to_string(d.join("bin/alias")).expect("link"),
        "#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        std::fs::read_link(d.join("bin/sh")).expect("symlink"),
        Path::new("/bin/busybox")
    );
    assert!(d.join("etc/deep/file").is_file());
    assert!(!d.join("dev/null").exists(), "device files are skipped");
    let mode = std::fs::metadata(d.join("bin"))
        .expect("dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}

#[test]
#[ignore = "needs root"]
fn whiteouts_become_overlay_whiteouts() {
    use std::os::unix::fs::FileTypeExt;
    let dest = tempfile::tempdir().expect("tmp");
    let bytes = layer(|b| {
        entry(b, "etc/.wh.gone", Regular, "", b"");
        entry(b, "opt/.wh..wh..opq", Regular, "", b"");
    });
    unpack_into(dest.path(), &bytes).expect("unpacks");
    let meta = std::fs::symlink_metadata(dest.path().join("etc/gone")).expect("whiteout");
    assert!(meta.file_type().is_char_device());
    assert!(dest.path().join("opt").is_dir());
}
