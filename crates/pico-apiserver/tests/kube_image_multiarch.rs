//! Issue 19 point 7: `scripts/build-image-multiarch.sh` packs one image per architecture
//! (amd64, arm64) into one OCI index. The binaries here are placeholders (the image is FROM
//! scratch, nothing runs at build time); building real arm64 binaries needs the cross
//! toolchain the script names, which CI does not have.

mod common;

use std::process::Command;

#[test]
#[ignore = "needs root and buildah (make test runs it as root)"]
fn kube_multiarch_image_is_one_index_with_amd64_and_arm64() {
    let root = common::repo_root();
    let bins = format!("target/image/multiarch-test-{}", std::process::id());
    for arch in ["amd64", "arm64"] {
        let dir = root.join(&bins).join(arch);
        std::fs::create_dir_all(&dir).expect("bin dir");
        for bin in ["pico-apiserver", "pico-agent"] {
            common::write_mode(&dir.join(bin), &format!("placeholder {arch}\n"), 0o755);
        }
    }
    let out_dir = tempfile::tempdir().expect("tempdir");
    let archive = out_dir.path().join("multiarch.tar");
    let image = format!("pico-multiarch-test:{}", std::process::id());
    let out = Command::new(root.join("scripts/build-image-multiarch.sh"))
        .arg(&image)
        .env("PICO_SKIP_BUILD", "1")
        .env("PICO_IMAGE_BIN_ROOT", &bins)
        .env("PICO_MULTIARCH_ARCHIVE", &archive)
        .output()
        .expect("run the script");
    let _ = std::fs::remove_dir_all(root.join(&bins));
    let _ = Command::new("buildah")
        .args(["manifest", "rm", &image])
        .env("STORAGE_DRIVER", "vfs")
        .output();
    assert!(out.status.success(), "{}", common::stderr(&out));

    let unpacked = out_dir.path().join("oci");
    std::fs::create_dir(&unpacked).expect("dir");
    let tar = Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .expect("tar");
    assert!(tar.success());
    let read = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("JSON")
    };
    let top = read(unpacked.join("index.json"));
    let digest = top["manifests"][0]["digest"].as_str().expect("digest");
    let blob = |d: &str| {
        unpacked
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index = read(blob(digest));
    let mut arches: Vec<String> = index["manifests"]
        .as_array()
        .expect("an image index")
        .iter()
        .map(|m| {
            assert_eq!(m["platform"]["os"], "linux");
            // The per-architecture image stays in buildah's store: remove it by its id.
            let manifest = read(blob(m["digest"].as_str().expect("digest")));
            if let Some(config) = manifest["config"]["digest"].as_str() {
                let _ = Command::new("buildah")
                    .args(["rmi", config.trim_start_matches("sha256:")])
                    .env("STORAGE_DRIVER", "vfs")
                    .output();
            }
            m["platform"]["architecture"]
                .as_str()
                .expect("arch")
                .to_owned()
        })
        .collect();
    arches.sort();
    assert_eq!(arches, ["amd64", "arm64"]);
}
