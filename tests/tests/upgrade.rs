//! Upgrades: a store written by an earlier release (the committed `tests/fixtures/store-v1`)
//! opens in this one with its data, and a store from a newer release is refused with a clear
//! message and exit code 74 before anything in it is touched.

use std::path::Path;
use std::process::Command;

use caretaker_tests::{Collector, bin};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
        .join("store")
}

/// Copies a fixture store to `data_dir/store` (sled wants its `blobs/` directory too).
fn install_fixture(name: &str, data_dir: &Path) {
    let to = data_dir.join("store");
    std::fs::create_dir_all(to.join("blobs")).expect("mkdir");
    for entry in std::fs::read_dir(fixture(name)).expect("fixture").flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

#[test]
fn a_store_from_the_previous_release_opens_with_its_assets_and_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    install_fixture("store-v1", &dir.path().join("data"));
    let collector = Collector::start(dir.path());
    let assets = collector.assets();
    assert_eq!(assets.len(), 1, "{assets:#?}");
    assert_eq!(assets[0]["hostname"], "vm");
    let id = assets[0]["id"].as_str().expect("id");
    let detail = collector.get(&format!("/assets/{id}"));
    assert!(
        detail["hardware"].is_object(),
        "the fixture's inventory is readable: {detail:#}"
    );
    let changes = collector.get(&format!("/changes?asset={id}"));
    assert!(
        !changes.as_array().expect("changes").is_empty(),
        "the fixture's change records are readable"
    );
}

#[test]
fn a_store_from_a_newer_release_is_refused_with_exit_74_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    install_fixture("store-too-new", &data);
    let before = std::fs::read(data.join("store/db")).expect("read");
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[grpc]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            data.display().to_string()
        ),
    )
    .expect("config");
    let output = Command::new(bin("caretaker-collector"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("run collector");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(74), "stderr:\n{stderr}");
    assert!(
        stderr.contains("has format 999, newer than this release reads (up to 1)"),
        "stderr:\n{stderr}"
    );
    assert!(!data.join("listen.json").exists(), "it never started");
    assert_eq!(std::fs::read(data.join("store/db")).expect("read"), before);
}
