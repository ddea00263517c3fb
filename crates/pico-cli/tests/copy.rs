//! `pico cp` both ways, single files and (`-r`) trees, checked with SHA-256 on both sides.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Server, User, assert_one_line_error, random_file, sha256, stdout};

/// `sha256sum` of a file inside the session.
fn remote_sha256(user: &User, id: &str, path: &str) -> String {
    let out = user.ok(&["exec", id, "--", "sha256sum", path]);
    out.split_whitespace().next().expect("digest").to_owned()
}

#[test]
fn cp_both_ways_with_checksums() {
    let server = Server::start(&[]);
    let user = User::new(&server, None);
    let id = user.create();
    let work = tempfile::tempdir().expect("tmp");

    // A file larger than one SFTP packet and than the progress threshold.
    let big = work.path().join("big.bin");
    random_file(&big, 3 * 1024 * 1024 + 17);
    user.ok(&["cp", big.to_str().expect("path"), &format!("{id}:big.bin")]);
    assert_eq!(remote_sha256(&user, &id, "big.bin"), sha256(&big));

    // Into an existing remote directory, under the local name; an absolute path too.
    user.ok(&["exec", &id, "--", "mkdir", "-p", "inbox"]);
    user.ok(&["cp", big.to_str().expect("path"), &format!("{id}:inbox")]);
    assert_eq!(remote_sha256(&user, &id, "inbox/big.bin"), sha256(&big));

    let back = work.path().join("back.bin");
    user.ok(&[
        "cp",
        &format!("{id}:inbox/big.bin"),
        back.to_str().expect("path"),
    ]);
    assert_eq!(sha256(&back), sha256(&big));

    // Into an existing local directory, under the remote name.
    let downloads = work.path().join("downloads");
    std::fs::create_dir(&downloads).expect("dir");
    user.ok(&[
        "cp",
        &format!("{id}:big.bin"),
        downloads.to_str().expect("path"),
    ]);
    assert_eq!(sha256(&downloads.join("big.bin")), sha256(&big));

    // A tree, with an executable bit and an empty directory, up and down again.
    let tree = work.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).expect("dirs");
    std::fs::create_dir_all(tree.join("empty")).expect("dirs");
    random_file(&tree.join("a.bin"), 100_000);
    random_file(&tree.join("sub/deeper/b.bin"), 70_000);
    std::fs::write(tree.join("sub/run.sh"), "#!/bin/sh\necho ran\n").expect("write");
    std::fs::set_permissions(
        tree.join("sub/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");

    let refused = assert_one_line_error(&user.run(&[
        "cp",
        tree.to_str().expect("path"),
        &format!("{id}:tree"),
    ]));
    assert!(refused.contains("-r"), "{refused}");
    user.ok(&["cp", "-r", tree.to_str().expect("path"), &format!("{id}:")]);
    assert_eq!(
        remote_sha256(&user, &id, "tree/a.bin"),
        sha256(&tree.join("a.bin"))
    );
    assert_eq!(
        remote_sha256(&user, &id, "tree/sub/deeper/b.bin"),
        sha256(&tree.join("sub/deeper/b.bin"))
    );
    assert_eq!(user.ok(&["exec", &id, "--", "tree/sub/run.sh"]), "ran\n");
    assert_eq!(
        user.ok(&["exec", &id, "--", "test -d tree/empty && echo yes"]),
        "yes\n"
    );

    let copy = work.path().join("copy");
    user.ok(&[
        "cp",
        "-r",
        &format!("{id}:tree"),
        copy.to_str().expect("path"),
    ]);
    for file in ["a.bin", "sub/deeper/b.bin", "sub/run.sh"] {
        assert_eq!(sha256(&copy.join(file)), sha256(&tree.join(file)), "{file}");
    }
    assert!(copy.join("empty").is_dir());
    let mode = std::fs::metadata(copy.join("sub/run.sh"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);

    // A missing remote file is one clear line.
    let missing = assert_one_line_error(&user.run(&[
        "cp",
        &format!("{id}:nope.txt"),
        work.path().to_str().expect("path"),
    ]));
    assert!(missing.contains("nope.txt"), "{missing}");
    assert!(stdout(&user.run(&["exec", &id, "--", "ls"])).contains("big.bin"));
}
