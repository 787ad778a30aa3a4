//! The conformance suite on sled: stores in temporary directories, and a restart that
//! opens a copy of the files taken while the store is still open — what a crash leaves
//! (no clean close), so only what was flushed counts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::store::conformance::Factory;
use crate::store::{Storage, Store};

#[derive(Default)]
struct Sled {
    dirs: Mutex<Vec<tempfile::TempDir>>,
    paths: Mutex<HashMap<usize, PathBuf>>,
}

fn id(store: &Arc<dyn Storage>) -> usize {
    Arc::as_ptr(store) as *const u8 as usize
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

impl Sled {
    fn open_new(&self, fill: impl FnOnce(&Path)) -> Arc<dyn Storage> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        fill(&path);
        let store: Arc<dyn Storage> = Arc::new(Store::open(&path).unwrap());
        self.dirs.lock().unwrap().push(dir);
        self.paths.lock().unwrap().insert(id(&store), path);
        store
    }
}

impl Factory for Sled {
    fn fresh(&self) -> Arc<dyn Storage> {
        self.open_new(|_| {})
    }

    fn restart(&self, store: Arc<dyn Storage>) -> Arc<dyn Storage> {
        let from = self.paths.lock().unwrap().remove(&id(&store)).expect("a store of this factory");
        let restarted = self.open_new(|to| copy_dir(&from, to));
        drop(store);
        restarted
    }

    fn on_disk(&self, store: &Arc<dyn Storage>, needle: &[u8]) -> Option<bool> {
        let path = self.paths.lock().unwrap().get(&id(store)).cloned()?;
        Some(super::files_contain(&path, needle))
    }
}

crate::conformance_tests!(Sled::default());
