use super::*;

/// Every (tree, key, value) of a store, for comparing two stores.
fn contents(store: &dyn Store) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let mut tree = Vec::new();
    let mut out = Vec::new();
    store
        .dump(&mut |item| {
            match item {
                Dump::Tree(name) => tree = name.to_vec(),
                Dump::Entry(k, v) => out.push((tree.clone(), k.to_vec(), v.to_vec())),
            }
            Ok(())
        })
        .expect("dump");
    out
}

/// A data directory with a store holding a few records, tokens and a nested file.
fn data_dir(root: &Path) -> PathBuf {
    let dir = root.join("data");
    let store = SledStore::open(&dir.join("store")).expect("open");
    store
        .import(b"assets", &[(b"a1".to_vec(), b"{}".to_vec())])
        .expect("import");
    store
        .import(b"a_tree_added_later", &[(b"k".to_vec(), b"v".to_vec())])
        .expect("import");
    store.set_meta("cursor", 7).expect("meta");
    store.flush().expect("flush");
    drop(store);
    std::fs::write(dir.join("api-token"), "t0k3n\n").expect("token");
    std::fs::create_dir_all(dir.join("pki")).expect("pki");
    std::fs::write(dir.join("pki/ca.key"), "KEY").expect("ca");
    std::fs::write(dir.join("listen.json"), "{}").expect("listen");
    dir
}

#[test]
fn a_backup_restores_every_tree_and_file_and_leaves_out_the_live_ones() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = data_dir(root.path());
    let file = root.path().join("b.ctbk");
    let pass = Passphrase::from_text("s3cret");
    let summary = write_offline(&dir, &[], &file, Some(&pass)).expect("backup");
    assert_eq!(summary.files, 2, "{summary:?}");
    let target = root.path().join("new");
    restore(&file, &target, Some(&pass)).expect("restore");
    let (a, b) = (
        SledStore::open(&dir.join("store")).expect("open"),
        SledStore::open(&target.join("store")).expect("open"),
    );
    assert_eq!(contents(&a), contents(&b));
    assert!(
        contents(&b)
            .iter()
            .any(|(t, _, _)| t == b"a_tree_added_later")
    );
    assert_eq!(
        std::fs::read_to_string(target.join("pki/ca.key")).expect("ca"),
        "KEY"
    );
    assert!(!target.join("listen.json").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(target.join("api-token"))
            .expect("meta")
            .permissions()
            .mode();
        let original = std::fs::metadata(dir.join("api-token"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, original & 0o777);
    }
}

#[test]
fn bad_restores_are_refused_and_change_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = data_dir(root.path());
    let file = root.path().join("b.ctbk");
    let pass = Passphrase::from_text("s3cret");
    write_offline(&dir, &[], &file, Some(&pass)).expect("backup");

    // Onto a non-empty directory: refused, its file untouched.
    let busy = root.path().join("busy");
    std::fs::create_dir_all(&busy).expect("mkdir");
    std::fs::write(busy.join("keep"), "mine").expect("write");
    let error = restore(&file, &busy, Some(&pass)).expect_err("non-empty");
    assert!(matches!(error, BackupError::NotEmpty(_)), "{error}");
    assert_eq!(
        std::fs::read_to_string(busy.join("keep")).expect("read"),
        "mine"
    );

    // Wrong passphrase, no passphrase, a damaged file: refused, nothing created.
    let target = root.path().join("new");
    let wrong = restore(&file, &target, Some(&Passphrase::from_text("nope"))).expect_err("wrong");
    assert!(matches!(wrong, BackupError::WrongPassphrase), "{wrong}");
    assert!(matches!(
        restore(&file, &target, None),
        Err(BackupError::NeedsPassphrase)
    ));
    let mut bytes = std::fs::read(&file).expect("read");
    let at = bytes.len() - 40;
    bytes[at] ^= 0xff;
    let damaged = root.path().join("damaged.ctbk");
    std::fs::write(&damaged, &bytes).expect("write");
    let error = restore(&damaged, &target, Some(&pass)).expect_err("damaged");
    assert!(matches!(error, BackupError::Corrupt(_)), "{error}");
    assert!(
        !target.exists(),
        "a failed restore leaves no directory behind"
    );
}

#[test]
fn daily_pruning_keeps_the_newest() {
    let root = tempfile::tempdir().expect("tempdir");
    for day in 1..=5 {
        std::fs::write(
            root.path()
                .join(format!("caretaker-2026120{day}T020000Z.ctbk")),
            "x",
        )
        .expect("write");
    }
    std::fs::write(root.path().join("other.txt"), "x").expect("write");
    prune(root.path(), 2);
    let left: Vec<String> = daily_backups(root.path())
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        [
            "caretaker-20261204T020000Z.ctbk",
            "caretaker-20261205T020000Z.ctbk"
        ]
    );
    assert!(root.path().join("other.txt").exists());
}
