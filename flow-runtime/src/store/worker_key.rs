//! The journal's worker key: 32 random bytes kept in the meta table, from which the
//! engine derives (with a keyed hash) the tokens it hands to remote-task workers, so that
//! a token stays verifiable after the engine restarts and cannot be forged without the
//! journal. Written once, outside the log (like the journal's ID): it changes no run.

use super::tables::META;
use super::Store;
use crate::error::FlowError;

/// The meta key of the worker key (32 bytes).
const WORKER_KEY: &str = "worker_key";

impl Store {
    /// The journal's worker key, created (and made durable) on first use.
    pub(crate) fn worker_key(&self) -> Result<[u8; 32], FlowError> {
        let stored = self.read(|txn| {
            let meta = match txn.open_table(META) {
                Ok(meta) => meta,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let key = meta.get(WORKER_KEY)?;
            Ok(key.and_then(|k| <[u8; 32]>::try_from(k.value()).ok()))
        })?;
        if let Some(key) = stored {
            return Ok(key);
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| FlowError::storage(format!("the OS random source failed: {e}")))?;
        self.with_writer(|db, writer| -> Result<(), FlowError> {
            // Batches may wait in the writer's open transaction: commit them first.
            writer.publish()?;
            let txn = db.begin_write()?;
            txn.open_table(META)?.insert(WORKER_KEY, key.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .ok_or_else(|| FlowError::stopped("the journal is closed"))??;
        Ok(key)
    }
}
