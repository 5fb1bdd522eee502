//! Turns an `open_file` fuzz input (e.g. a crash under `artifacts/open_file/`) into the
//! journal file it stands for, so it can be kept under `regressions/` independently of
//! how the target reads its input, and opened by any engine:
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example journal_image -- INPUT OUTPUT.redb
//! ```

use arbitrary::{Arbitrary, Unstructured};
use flow_fuzz::journal::Journal;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: journal_image INPUT OUTPUT.redb");
        std::process::exit(2);
    };
    let data = std::fs::read(input).expect("read the fuzz input");
    let journal = Journal::arbitrary_take_rest(Unstructured::new(&data)).expect("decode input");
    let bytes = match journal {
        Journal::Raw(bytes) | Journal::Structured(bytes) => bytes,
    };
    std::fs::write(output, &bytes).expect("write the journal");
    println!("{output}: {} bytes", bytes.len());
}
