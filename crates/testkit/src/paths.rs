//! Where the built binaries are, and where a run's logs go.

use std::path::{Path, PathBuf};

/// The binary `name` of this workspace's build, in the profile the tests
/// themselves were built with (a release benchmark runs release binaries).
pub fn binary(name: &str) -> PathBuf {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
            PathBuf::from,
        )
        .join(profile)
        .join(name)
}

/// The directory a run writes its logs to: `$variable` when set, else a new
/// one under the temp dir, removed when this drops unless the run failed
/// (a panic) or [`LogDir::keep`] was called.
pub struct LogDir {
    path: PathBuf,
    temp: Option<tempfile::TempDir>,
}

impl LogDir {
    pub fn new(suite: &str, variable: &str) -> Self {
        if let Some(dir) = std::env::var_os(variable) {
            let path = PathBuf::from(dir);
            std::fs::create_dir_all(&path)
                .unwrap_or_else(|e| panic!("{variable}={}: {e}", path.display()));
            return Self { path, temp: None };
        }
        let temp = tempfile::Builder::new()
            .prefix(&format!("secgroup-{suite}-"))
            .tempdir()
            .expect("a log directory");
        Self {
            path: temp.path().to_owned(),
            temp: Some(temp),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file `name` in it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Leaves the directory in place, to be read after the run.
    pub fn keep(&mut self) -> &Path {
        if let Some(temp) = self.temp.take() {
            let _ = temp.keep();
        }
        &self.path
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if std::thread::panicking() && self.temp.is_some() {
            eprintln!("logs kept in {}", self.keep().display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_s_own_log_directory_is_removed_unless_kept() {
        let logs = LogDir::new("testkit", "SECGROUP_TESTKIT_UNSET");
        let removed = logs.path().to_owned();
        assert!(removed.is_dir());
        drop(logs);
        assert!(!removed.exists());

        let mut logs = LogDir::new("testkit", "SECGROUP_TESTKIT_UNSET");
        let kept = logs.keep().to_owned();
        drop(logs);
        assert!(kept.is_dir());
        std::fs::remove_dir(kept).expect("cleanup");
    }
}
