//! A storage backend that reads a file and keeps every write in memory: what an
//! inspect-only open (`EngineBuilder::inspect_only`) runs redb and the write-ahead log
//! on, so that recovering a journal to look at it (redb's repair, the log's replay, the
//! open's bookkeeping, the checkpoint at shutdown) never changes a byte on disk.
//!
//! Writes land in 4 KiB blocks copied from the file on first touch; reads take a block
//! from memory if written, else from the file (zeros past what the file had, or past a
//! shrink). Memory grows with what is written, not with the file.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;

use redb::StorageBackend;

const BLOCK: u64 = 4096;

/// The file underneath (read only) and the writes over it.
#[derive(Debug)]
pub(crate) struct Overlay {
    base: Box<dyn StorageBackend>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The length readers see.
    len: u64,
    /// How much of the file underneath still shows through: its length, cut by any
    /// shrink since (bytes past a shrink read as zeros when the length grows again).
    base_visible: u64,
    /// Written blocks, by index.
    blocks: HashMap<u64, Box<[u8]>>,
}

impl Overlay {
    pub(crate) fn new(base: Box<dyn StorageBackend>) -> io::Result<Self> {
        let len = base.len()?;
        Ok(Overlay {
            base,
            state: Mutex::new(State {
                len,
                base_visible: len,
                blocks: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fills `out` with the bytes at `offset` as the file underneath shows them.
    fn read_base(&self, state: &State, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let end = offset + out.len() as u64;
        let from_base = end.min(state.base_visible).saturating_sub(offset) as usize;
        if from_base > 0 {
            self.base.read(offset, &mut out[..from_base])?;
        }
        out[from_base..].fill(0);
        Ok(())
    }
}

impl StorageBackend for Overlay {
    fn len(&self) -> io::Result<u64> {
        Ok(self.lock().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let state = self.lock();
        let end = offset + out.len() as u64;
        if end > state.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read of {offset}..{end} past the end ({})", state.len),
            ));
        }
        let mut at = offset;
        while at < end {
            let index = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let take = ((BLOCK - at % BLOCK).min(end - at)) as usize;
            let dest = &mut out[(at - offset) as usize..][..take];
            match state.blocks.get(&index) {
                Some(block) => dest.copy_from_slice(&block[within..within + take]),
                None => self.read_base(&state, at, dest)?,
            }
            at += take as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.lock();
        if len < state.len {
            state.base_visible = state.base_visible.min(len);
            state.blocks.retain(|index, _| index * BLOCK < len);
            if !len.is_multiple_of(BLOCK) {
                if let Some(block) = state.blocks.get_mut(&(len / BLOCK)) {
                    block[(len % BLOCK) as usize..].fill(0);
                }
            }
        }
        state.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut state = self.lock();
        let end = offset + data.len() as u64;
        let mut at = offset;
        while at < end {
            let index = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let take = ((BLOCK - at % BLOCK).min(end - at)) as usize;
            if !state.blocks.contains_key(&index) {
                let mut block = vec![0u8; BLOCK as usize].into_boxed_slice();
                // Only the part the length covers shows the file; the rest is zeros.
                let shown = (state.len.max(index * BLOCK) - index * BLOCK).min(BLOCK) as usize;
                self.read_base(&state, index * BLOCK, &mut block[..shown])?;
                state.blocks.insert(index, block);
            }
            let block = state.blocks.get_mut(&index).expect("inserted above");
            block[within..within + take].copy_from_slice(&data[(at - offset) as usize..][..take]);
            at += take as u64;
        }
        state.len = state.len.max(end);
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        self.base.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::backends::InMemoryBackend;

    fn base(bytes: &[u8]) -> Box<dyn StorageBackend> {
        let backend = InMemoryBackend::new();
        backend.set_len(bytes.len() as u64).unwrap();
        backend.write(0, bytes).unwrap();
        Box::new(backend)
    }

    fn read(o: &Overlay, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        o.read(offset, &mut out).unwrap();
        out
    }

    #[test]
    fn writes_stay_in_memory_and_reads_see_them_over_the_file() {
        let file: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let under = base(&file);
        let o = Overlay::new(under).unwrap();
        assert_eq!(read(&o, 4090, 20), file[4090..4110]);
        o.write(4094, &[0xAA; 4]).unwrap();
        let mut expected = file[4090..4110].to_vec();
        expected[4..8].fill(0xAA);
        assert_eq!(read(&o, 4090, 20), expected);
        // Growing shows zeros; a write past the end grows.
        o.set_len(12_000).unwrap();
        assert_eq!(read(&o, 9_998, 4), [file[9_998], file[9_999], 0, 0]);
        o.write(12_000, &[7; 10]).unwrap();
        assert_eq!(o.len().unwrap(), 12_010);
        assert_eq!(read(&o, 11_998, 4), [0, 0, 7, 7]);
        // A shrink hides the file past it, also once the length grows again.
        o.set_len(5_000).unwrap();
        o.set_len(9_000).unwrap();
        assert_eq!(read(&o, 4_998, 4), [file[4_998], file[4_999], 0, 0]);
        assert_eq!(read(&o, 4094, 4), [0xAA; 4]);
        assert!(o.read(8_999, &mut [0; 2]).is_err(), "past the end");
    }

    #[test]
    fn the_file_underneath_is_never_written() {
        let file = vec![1u8; 8192];
        let under = InMemoryBackend::new();
        under.set_len(8192).unwrap();
        under.write(0, &file).unwrap();
        let shared = std::sync::Arc::new(under);
        #[derive(Debug)]
        struct ReadOnly(std::sync::Arc<InMemoryBackend>);
        impl StorageBackend for ReadOnly {
            fn len(&self) -> io::Result<u64> {
                self.0.len()
            }
            fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
                self.0.read(offset, out)
            }
            fn set_len(&self, _: u64) -> io::Result<()> {
                panic!("set_len reached the file")
            }
            fn sync_data(&self) -> io::Result<()> {
                panic!("sync reached the file")
            }
            fn write(&self, _: u64, _: &[u8]) -> io::Result<()> {
                panic!("a write reached the file")
            }
        }
        let o = Overlay::new(Box::new(ReadOnly(shared.clone()))).unwrap();
        o.write(100, &[9; 5000]).unwrap();
        o.set_len(0).unwrap();
        o.write(0, &[3; 3]).unwrap();
        o.sync_data().unwrap();
        let mut now = vec![0; 8192];
        shared.read(0, &mut now).unwrap();
        assert_eq!(now, file);
        assert_eq!(read(&o, 0, 3), [3, 3, 3]);
    }
}
