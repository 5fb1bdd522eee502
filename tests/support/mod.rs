//! Shared by the crash-safety tests (`tests/crash.rs`, `tests/power_loss.rs`): the mixed
//! workload, the execution log its tasks write, journal inspection and the checks that
//! prove a journal is consistent with an uninterrupted run.
#![allow(dead_code)]

pub mod exec_log;
pub mod journal;
pub mod rng;
pub mod workload;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// True when the long torture mode is asked for (`FLOW_TORTURE=1`).
pub fn torture() -> bool {
    std::env::var("FLOW_TORTURE").is_ok_and(|v| v == "1")
}

/// A numeric knob from the environment, with a default.
pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// A fresh, empty directory under the system temp dir, removed on drop unless the test
/// failed (then it is kept for post-mortem and its path is printed).
pub struct ScratchDir {
    pub path: PathBuf,
}

impl ScratchDir {
    pub fn new(label: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("flow-{label}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create scratch dir");
        ScratchDir { path }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept scratch dir for inspection: {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
