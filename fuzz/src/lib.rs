//! Shared code of flow's fuzz targets (`fuzz_targets/`): see `harness` for what runs on
//! untrusted bytes and `journal` for how fuzz input becomes a journal file.

pub mod harness;
pub mod journal;
