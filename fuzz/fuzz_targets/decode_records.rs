//! Every decoder of stored data on arbitrary bytes: each must return a value or an error
//! with a message, never panic, overflow the stack, hang or allocate without bound.
//!
//! The decoders run on a thread with a 2 MiB stack, the size of the tokio worker threads
//! the engine decodes on (the fuzzer's main thread has 8 MiB and would hide deep
//! recursion). One such thread serves every input.

#![no_main]

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;

/// Stack of a tokio worker thread (and of Rust's spawned threads by default).
const ENGINE_STACK: usize = 2 * 1024 * 1024;

struct Worker {
    inputs: SyncSender<Vec<u8>>,
    done: Receiver<()>,
}

fn worker() -> &'static Mutex<Worker> {
    static WORKER: OnceLock<Mutex<Worker>> = OnceLock::new();
    WORKER.get_or_init(|| {
        let (inputs, todo) = sync_channel::<Vec<u8>>(0);
        let (finished, done) = sync_channel(0);
        std::thread::Builder::new()
            .name("decode".into())
            .stack_size(ENGINE_STACK)
            .spawn(move || {
                for data in todo {
                    flow_fuzz::harness::decode_all(&data);
                    let _ = finished.send(());
                }
            })
            .expect("spawn the decoding thread");
        Mutex::new(Worker { inputs, done })
    })
}

fuzz_target!(|data: &[u8]| {
    flow_fuzz::harness::install_panic_policy(true);
    let worker = worker().lock().unwrap();
    worker
        .inputs
        .send(data.to_vec())
        .expect("decoding thread gone");
    worker.done.recv().expect("decoding thread gone");
});
