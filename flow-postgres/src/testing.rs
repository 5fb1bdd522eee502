//! A throwaway PostgreSQL cluster for tests and benchmarks, started by the project's
//! `scripts/pg-cluster.sh` in a temporary directory on a free loopback port.
//!
//! [`TestCluster::shared`] starts one per test binary, on first use. Without
//! PostgreSQL it returns `None` after printing why (a test then skips), except when the
//! environment variable `CI` is `true`: then it panics, so that CI fails rather than
//! skips. The cluster is stopped and its directory deleted when the process that
//! started it exits (a watchdog process waits for that), or by [`TestCluster::stop`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// A running throwaway cluster.
pub struct TestCluster {
    dir: PathBuf,
    port: u16,
    script: PathBuf,
    watchdog: Mutex<Option<Child>>,
}

/// Where `scripts/pg-cluster.sh` is: beside this crate in the workspace.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("pg-cluster.sh")
}

impl TestCluster {
    /// Starts a cluster in a new directory under the system's temporary directory;
    /// the error says why it could not.
    pub fn start() -> Result<TestCluster, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "flow-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let script = script();
        let output = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("could not run {}: {e}", script.display()))?;
        if !output.status.success() {
            let _ = Command::new("bash")
                .arg(&script)
                .arg("stop")
                .arg(&dir)
                .status();
            return Err(format!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let port = std::fs::read_to_string(dir.join("port"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| "the cluster script wrote no port".to_string())?;
        // Stops the cluster when this process exits, however it exits.
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; bash '{script}' stop '{dir}'",
                pid = std::process::id(),
                script = script.display(),
                dir = dir.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        Ok(TestCluster {
            dir,
            port,
            script,
            watchdog: Mutex::new(watchdog),
        })
    }

    /// One cluster for the whole test binary; `None` (after printing why) if it cannot
    /// be started, unless `CI=true`, where that panics.
    pub fn shared() -> Option<&'static TestCluster> {
        static CLUSTER: OnceLock<Result<TestCluster, String>> = OnceLock::new();
        match CLUSTER.get_or_init(TestCluster::start) {
            Ok(cluster) => Some(cluster),
            Err(why) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("CI=true and PostgreSQL could not be started: {why}");
                }
                eprintln!("skipping a PostgreSQL test: {why}");
                None
            }
        }
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` as the superuser `flow`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://flow:flow@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new empty database named after `prefix` and returns its URL.
    pub fn create_database(&self, prefix: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{}_{}_{}",
            prefix
                .to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.execute("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Creates a new empty schema named after `prefix` in database `postgres` and
    /// returns a URL whose connections use it (`search_path`): cheaper than a database,
    /// as separate for flow.
    pub fn create_schema(&self, prefix: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{}_{}_{}",
            prefix
                .to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.execute("postgres", &format!("CREATE SCHEMA {name}"));
        format!("{}?options=-c%20search_path%3D{name}", self.url("postgres"))
    }

    /// Runs `sql` in database `db` (on a thread of its own: callable from async tests).
    pub fn execute(&self, db: &str, sql: &str) {
        let (url, sql) = (self.url(db), sql.to_string());
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls)
                .unwrap_or_else(|e| panic!("connecting to the test cluster: {e}"));
            client
                .batch_execute(&sql)
                .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"));
        })
        .join()
        .expect("the test cluster's statement panicked");
    }

    /// Runs the query `sql` in database `db` and returns its rows' columns as text.
    pub fn query(&self, db: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        let (url, sql) = (self.url(db), sql.to_string());
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls)
                .unwrap_or_else(|e| panic!("connecting to the test cluster: {e}"));
            let messages = client
                .simple_query(&sql)
                .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"));
            messages
                .into_iter()
                .filter_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()
        })
        .join()
        .expect("the test cluster's query panicked")
    }

    /// Writes the journal file (redb's) stored in the database at `url` to `to`, as
    /// the store holds it: after a clean shutdown, the whole journal.
    pub fn copy_journal(&self, url: &str, to: &Path) {
        let (url, to) = (url.to_string(), to.to_path_buf());
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls)
                .unwrap_or_else(|e| panic!("connecting to the test cluster: {e}"));
            let len: i64 = client
                .query_one("SELECT len FROM flow_files WHERE file = 0", &[])
                .expect("the journal's length")
                .get(0);
            let mut bytes = vec![0u8; len as usize];
            for row in client
                .query("SELECT idx, data FROM flow_blocks WHERE file = 0", &[])
                .expect("the journal's blocks")
            {
                let idx: i64 = row.get(0);
                let data: &[u8] = row.get(1);
                let start = idx as usize * crate::backend::BLOCK as usize;
                bytes[start..start + data.len()].copy_from_slice(data);
            }
            std::fs::write(&to, bytes).expect("writing the journal's copy");
        })
        .join()
        .expect("copying the journal panicked");
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`), keeping its data.
    pub fn halt(&self) {
        self.script_command("halt");
    }

    /// Starts a halted server again, on the same port.
    pub fn resume(&self) {
        self.script_command("resume");
    }

    fn script_command(&self, command: &str) {
        let status = Command::new("bash")
            .arg(&self.script)
            .arg(command)
            .arg(&self.dir)
            .status()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", self.script.display()));
        assert!(status.success(), "pg-cluster.sh {command} failed");
    }

    /// Stops the cluster now and deletes its directory.
    pub fn stop(&self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .status();
        if let Some(mut watchdog) = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
