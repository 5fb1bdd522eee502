//! One connection to PostgreSQL, owned by a thread of its own.
//!
//! The synchronous client (`postgres`) runs its own small tokio runtime and may not be
//! called from a thread that is inside another runtime, which every caller here is (the
//! engine commits from `block_in_place` and opens from `spawn_blocking`). So each
//! connection lives on a plain thread, and callers hand it closures over a channel and
//! wait for their answer.

use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use flow_runtime::FlowError;
use postgres::{Client, Config, NoTls};

use crate::error::{connect_error, describe, storage};

type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// A connection on its own thread; dropped, the thread ends and the connection closes.
pub(crate) struct Conn {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Conn {
    /// Connects to `config` (with `synchronous_commit` on for the session, so that a
    /// commit returns only once the server made it durable).
    pub(crate) fn connect(config: &Config, role: &str) -> Result<Conn, FlowError> {
        let config = config.clone();
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, connected) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("flow-postgres-{role}"))
            .spawn(move || {
                let client = open_client(&config);
                let mut client = match client {
                    Ok(client) => {
                        let _ = ready.send(Ok(()));
                        client
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    // After an outage, the next request gets a new connection (and fails
                    // as the old one would if the server is still away).
                    if client.is_closed() {
                        match open_client(&config) {
                            Ok(reconnected) => client = reconnected,
                            Err(e) => tracing::warn!(error = %e, "PostgreSQL is unreachable"),
                        }
                    }
                    job(&mut client);
                }
            })
            .map_err(|e| {
                storage(format!(
                    "could not start a PostgreSQL connection thread: {e}"
                ))
            })?;
        match connected.recv() {
            Ok(Ok(())) => Ok(Conn {
                jobs: Mutex::new(Some(jobs)),
                thread: Mutex::new(Some(thread)),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(storage(
                "the PostgreSQL connection thread ended while connecting",
            )),
        }
    }

    /// Runs `f` on the connection and returns what it returned; fails only if the
    /// connection's thread is gone.
    pub(crate) fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> T + Send + 'static,
    ) -> Result<T, FlowError> {
        let (reply, answer) = mpsc::channel();
        self.enqueue(Box::new(move |client| {
            let _ = reply.send(f(client));
        }))?;
        answer.recv().map_err(|_| ended_during_request())
    }

    /// [`call`](Self::call) for async callers: waits for the answer without blocking
    /// the runtime's thread.
    pub(crate) async fn call_async<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> T + Send + 'static,
    ) -> Result<T, FlowError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.enqueue(Box::new(move |client| {
            let _ = reply.send(f(client));
        }))?;
        answer.await.map_err(|_| ended_during_request())
    }

    /// Hands `job` to the connection's thread.
    fn enqueue(&self, job: Job) -> Result<(), FlowError> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(jobs) = jobs.as_ref() else {
            return Err(storage("the PostgreSQL connection is closed"));
        };
        jobs.send(job)
            .map_err(|_| storage("the PostgreSQL connection's thread has ended"))
    }

    /// Closes the connection and waits for its thread.
    pub(crate) fn close(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.close();
    }
}

fn ended_during_request() -> FlowError {
    storage("the PostgreSQL connection's thread ended during a request")
}

/// Opens a client on the current (plain) thread.
pub(crate) fn open_client(config: &Config) -> Result<Client, FlowError> {
    let mut config = config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("flow");
    }
    let mut client = config
        .connect(NoTls)
        .map_err(|e| connect_error(&config, e))?;
    client
        .batch_execute("SET synchronous_commit = on")
        .map_err(|e| {
            storage(format!(
                "could not set up the session on {}: {e}",
                describe(&config)
            ))
        })?;
    Ok(client)
}
