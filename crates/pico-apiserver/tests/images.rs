//! OCI images of the local runtime against a real registry on loopback: the pull and its
//! cache (indexes, whiteouts, digests, one download under concurrent pulls, clear failures).

mod registry;

use std::collections::HashSet;
use std::sync::Arc;

use pico_apiserver::images::{ImageError, ImageStore, RegistryOptions};
use registry::{Item, Registry, busybox_layer, config, index_for, layer};

fn store(registry: &Registry, dir: &std::path::Path) -> ImageStore {
    let options = RegistryOptions {
        insecure: vec![registry.host()],
        ..RegistryOptions::default()
    };
    ImageStore::new(dir, options, true).expect("image store")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A two-layer image whose second layer deletes a file of the first, behind an index.
fn push_layered(registry: &Registry, repo: &str) -> (Vec<u8>, Vec<u8>) {
    let base = busybox_layer("pico layered");
    let top = layer(&[
        Item::Dir("etc"),
        Item::File("etc/.wh.group", b"", 0o644),
        Item::File("etc/motd", b"top layer\n", 0o644),
    ]);
    let (digest, size) = registry.push_image(
        repo,
        "single",
        &[base.clone(), top.clone()],
        &config(&["PATH=/bin", "GREETING=hello"], "/root"),
    );
    let decoy = layer(&[Item::File("other-arch", b"", 0o644)]);
    let decoy = registry.push_image(repo, "decoy", &[decoy], &config(&[], "/"));
    let index = index_for(&digest, size, (&decoy.0, decoy.1));
    registry.push_manifest(repo, "1", registry::OCI_INDEX, &index);
    (base, top)
}

#[test]
#[ignore = "needs root"]
fn pulls_an_index_for_this_machine_with_layers_and_whiteouts() {
    use std::os::unix::fs::FileTypeExt;
    let registry = Registry::start();
    let (base, top) = push_layered(&registry, "pico-test/layered");
    let dir = tempfile::tempdir().expect("tmp");
    let store = store(&registry, dir.path());
    let image = format!("{}/pico-test/layered:1", registry.host());
    let record = runtime().block_on(store.ensure(&image)).expect("pulled");
    assert_eq!(record.layers.len(), 2);
    assert_eq!(record.layers[0].digest, registry::sha256(&base));
    assert_eq!(record.layers[1].digest, registry::sha256(&top));
    assert_eq!(
        record.config.env.as_deref(),
        Some(&["PATH=/bin".to_owned(), "GREETING=hello".to_owned()][..])
    );
    assert_eq!(record.config.working_dir.as_deref(), Some("/root"));
    let bottom = store.layer_dir(&record.layers[0].digest);
    assert!(bottom.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(bottom.join("bin/sh")).expect("link"),
        std::path::Path::new("busybox")
    );
    let whiteout =
        std::fs::symlink_metadata(store.layer_dir(&record.layers[1].digest).join("etc/group"))
            .expect("whiteout");
    assert!(whiteout.file_type().is_char_device());
    // Listed, and pulled once: asking again reads the cache.
    assert_eq!(store.list().len(), 1);
    let again = runtime().block_on(store.ensure(&image)).expect("cached");
    assert_eq!(again, record);
    assert_eq!(
        registry.blob_gets(&registry::sha256(&base)),
        1,
        "{}",
        registry.logs()
    );
}

#[test]
#[ignore = "needs root"]
fn ten_concurrent_pulls_fetch_each_layer_once() {
    let registry = Registry::start();
    let (base, top) = push_layered(&registry, "pico-test/many");
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(store(&registry, dir.path()));
    let image = format!("{}/pico-test/many:1", registry.host());
    let records = runtime().block_on(async {
        let pulls = (0..10).map(|_| {
            let (store, image) = (store.clone(), image.clone());
            tokio::spawn(async move { store.ensure(&image).await })
        });
        futures::future::join_all(pulls).await
    });
    for record in records {
        record.expect("joined").expect("pulled");
    }
    for blob in [&base, &top] {
        assert_eq!(
            registry.blob_gets(&registry::sha256(blob)),
            1,
            "{}",
            registry.logs()
        );
    }
}

#[test]
fn failures_say_what_went_wrong() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().expect("tmp");
    let store = store(&registry, dir.path());
    let rt = runtime();
    let missing = format!("{}/pico-test/nonexistent:zzz", registry.host());
    let err = rt.block_on(store.ensure(&missing)).expect_err("missing");
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");
    assert!(err.to_string().contains("nonexistent"), "{err}");

    let err = rt
        .block_on(store.ensure("Not An Image"))
        .expect_err("invalid");
    assert!(matches!(err, ImageError::InvalidReference(_)), "{err}");

    // A plain-HTTP registry not named by --insecure-registry is spoken to over TLS: refused.
    let strict = ImageStore::new(dir.path(), RegistryOptions::default(), false).expect("store");
    let err = rt.block_on(strict.ensure(&missing)).expect_err("no TLS");
    assert!(matches!(err, ImageError::Registry(_)), "{err}");
    assert!(store.list().is_empty());
}

#[test]
fn a_pinned_digest_must_match() {
    let registry = Registry::start();
    let base = layer(&[Item::File("hello", b"hi\n", 0o644)]);
    let (digest, _) = registry.push_image("pico-test/pinned", "1", &[base], &config(&[], "/"));
    let dir = tempfile::tempdir().expect("tmp");
    let store = store(&registry, dir.path());
    let rt = runtime();
    let pinned = format!("{}/pico-test/pinned@{digest}", registry.host());
    let record = rt
        .block_on(store.ensure(&pinned))
        .expect("pulled by digest");
    assert_eq!(record.digest, digest);
    // A tag and a digest that names another manifest: the registry serves the digest, whose
    // bytes match it; an unknown digest is simply not found.
    let unknown = format!(
        "{}/pico-test/pinned@sha256:{}",
        registry.host(),
        "1".repeat(64)
    );
    let err = rt
        .block_on(store.ensure(&unknown))
        .expect_err("unknown digest");
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");
}

#[test]
fn eviction_keeps_images_in_use() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().expect("tmp");
    let store = store(&registry, dir.path());
    let rt = runtime();
    let mut digests = Vec::new();
    for n in 0..3 {
        let data = vec![n as u8; 4096];
        let blob = layer(&[Item::File("data", &data, 0o644)]);
        let tag = format!("{n}");
        registry.push_image("pico-test/evict", &tag, &[blob], &config(&[], "/"));
        let image = format!("{}/pico-test/evict:{n}", registry.host());
        digests.push(rt.block_on(store.ensure(&image)).expect("pulled").digest);
        // Pull times are whole seconds: order them.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let in_use: HashSet<String> = [digests[0].clone()].into();
    let removed = rt.block_on(store.evict(1, &in_use));
    assert_eq!(removed, 2);
    let left: Vec<String> = store.list().into_iter().map(|i| i.digest).collect();
    assert_eq!(left, vec![digests[0].clone()]);
}
