//! The load test in its reduced size (the full size is `bench/run.sh load`): concurrent
//! tunnels echoing data with checks while sessions are created and deleted around them,
//! and nothing corrupted, dropped or leaked afterwards. The checks live in `pico-bench load`.

mod common;

#[test]
fn concurrent_tunnels_and_churn_lose_and_leak_nothing() {
    let bench = common::bin_dir().join("pico-bench");
    assert!(
        bench.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        bench.display()
    );
    let output = std::process::Command::new(&bench)
        .arg("--bin-dir")
        .arg(common::bin_dir())
        .args([
            "load",
            "--tunnels",
            "100",
            "--sessions",
            "10",
            "--mib",
            "1",
            "--churn",
            "20",
        ])
        .env("RUST_LOG", "error")
        .output()
        .expect("run pico-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("all checks equal"), "{stdout}");
}
