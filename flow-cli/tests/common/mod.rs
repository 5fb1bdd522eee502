//! Running the built `flow` binary, and scratch directories.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

/// What one run of the binary did.
#[derive(Debug)]
pub struct Flow {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Flow {
    /// Asserts it succeeded.
    pub fn ok(self) -> Flow {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts it succeeded; its stdout as JSON.
    pub fn json(self) -> Value {
        let done = self.ok();
        serde_json::from_str(&done.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", done.stdout))
    }
}

/// Runs `flow ARGS` with `env` set (and no FLOW_* or proxy variables of the test's
/// own environment).
pub fn flow(args: &[&str], env: &[(&str, &str)]) -> Flow {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flow"));
    command.args(args).stdin(Stdio::null());
    for name in [
        "FLOW_URL",
        "FLOW_TOKEN",
        "FLOW_JOURNAL",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "NO_COLOR",
    ] {
        command.env_remove(name);
    }
    command.env("NO_PROXY", "127.0.0.1,localhost");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("the flow binary runs");
    Flow {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A fresh directory, removed on drop unless the test failed.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(label: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "flow-cli-{label}-{}-{n}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&path).unwrap();
        Scratch { path }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
