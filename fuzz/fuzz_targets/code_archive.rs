//! Any bytes as an uploaded code archive, through the real code store: the only acceptable outcomes are stored
//! or refused, and either way nothing outside the store's folder is created, changed or read (a secret next to
//! the data folder never ends up in unpacked code; every unpacked link stays inside).

#![no_main]

use std::path::Path;

use chaintrigger::runtime::code::{CodeLimits, CodeStore, StoreAccess};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"SECRET-outside-the-code-folder";

fn listing(dir: &Path, skip: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.starts_with(skip) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        out.push(format!("{} {:?}", path.display(), meta.file_type()));
        if meta.is_dir() {
            listing(&path, skip, out);
        }
    }
}

fn check_unpacked(dir: &Path, root: &Path) {
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        if meta.file_type().is_symlink() {
            if let Ok(real) = std::fs::canonicalize(&path) {
                assert!(real.starts_with(root), "{} leads out", path.display());
            }
        } else if meta.is_dir() {
            check_unpacked(&path, root);
        } else {
            let contents = std::fs::read(&path).expect("read");
            assert!(
                !contents.windows(SECRET.len()).any(|w| w == SECRET),
                "{} copied the secret",
                path.display()
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::create_dir_all(dir.path().join("outside/sub")).expect("outside");
    std::fs::write(dir.path().join("outside/secret.txt"), SECRET).expect("secret");
    let code_root = dir.path().join("data/code");
    let store = CodeStore::open(
        code_root.clone(),
        CodeLimits {
            max_unpacked_bytes: 8 * 1024 * 1024,
            max_entries: 256,
            ..CodeLimits::default()
        },
        StoreAccess::Private,
    )
    .expect("store");
    let mut before = Vec::new();
    listing(dir.path(), &code_root, &mut before);
    let stored = store.store(data);
    let mut after = Vec::new();
    listing(dir.path(), &code_root, &mut after);
    assert_eq!(before, after, "something outside the code store changed");
    if let Ok(stored) = stored {
        let folder = store.dir(stored.checksum);
        let root = std::fs::canonicalize(&folder).expect("stored folder");
        check_unpacked(&folder, &root);
    }
});
