//! An engine opened on a hostile journal: the input is either the whole redb file, or
//! (more often) the rows of a well-formed redb file holding flow's tables. Opening,
//! listing, reading histories and letting the drivers run briefly must give `Ok` or a
//! `FlowError` with a message, never a panic (in any thread), a hang or unbounded memory.

#![no_main]

use std::time::Duration;

use flow_fuzz::harness::{builder, inspect, install_panic_policy};
use flow_fuzz::journal::{preloaded_backend, Journal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|journal: Journal| {
    install_panic_policy(true);
    let (bytes, settle) = match journal {
        Journal::Raw(bytes) => (bytes, Duration::ZERO),
        Journal::Structured(bytes) => (bytes, Duration::from_millis(3)),
    };
    let backend = preloaded_backend(&bytes);
    // A runtime per input, dropped at the end: nothing an engine spawned outlives its
    // input, so a crash is charged to the input that caused it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build a tokio runtime");
    runtime.block_on(async move {
        let opened = builder().backend(backend).open_in_memory().await;
        inspect(opened, settle).await;
    });
});
