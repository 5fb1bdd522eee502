//! Deliveries: changes from outside a run applied at most once per request ID
//! (`Engine::deliver`), for stores that pass requests between processes and may hand
//! the same one over again after a crash.
//!
//! The request ID is recorded in [`DELIVERIES`] by the same change that applies the
//! request, so both are in the same batch, logged and replayed together: whichever
//! engine holds the journal next finds the ID and applies nothing. A change refused with
//! a logical error writes nothing, its ID included, so a retry is judged anew.

use redb::{ReadTransaction, ReadableTable, TableError};

use super::change::{Applied, Change};
use super::tables::DELIVERIES;
use super::txn_tables::Tables;
use super::Store;
use crate::error::FlowError;

impl Tables<'_> {
    /// Applies `change` under `request`, unless that ID is recorded already: then
    /// nothing is written and the result is `None`.
    pub(crate) fn deliver(
        &mut self,
        request: &str,
        change: &Change,
        now_ms: u64,
    ) -> Result<Option<Applied>, FlowError> {
        if self.deliveries.read()?.get(request)?.is_some() {
            return Ok(None);
        }
        // Checks come before writes in every change: a refused one leaves no ID behind.
        let applied = change.apply(self, now_ms)?;
        self.deliveries.write()?.insert(request, ())?;
        Ok(Some(applied))
    }

    /// Deletes the recorded `requests` (those that are not recorded are skipped).
    pub(crate) fn forget_deliveries(&mut self, requests: &[String]) -> Result<(), FlowError> {
        let table = self.deliveries.write()?;
        for request in requests {
            table.remove(request.as_str())?;
        }
        Ok(())
    }
}

/// Runs `f` on the deliveries table, or returns `absent` for a journal that has none (a
/// journal written before it, opened without a write).
fn with_table<T>(
    txn: &ReadTransaction,
    absent: T,
    f: impl FnOnce(redb::ReadOnlyTable<&'static str, ()>) -> Result<T, FlowError>,
) -> Result<T, FlowError> {
    match txn.open_table(DELIVERIES) {
        Ok(table) => f(table),
        Err(TableError::TableDoesNotExist(_)) => Ok(absent),
        Err(e) => Err(e.into()),
    }
}

/// Whether request ID `request` is recorded.
pub(super) fn delivered(store: &Store, request: &str) -> Result<bool, FlowError> {
    store.read(|txn| with_table(txn, false, |table| Ok(table.get(request)?.is_some())))
}

/// Every recorded request ID, in order.
pub(super) fn deliveries(store: &Store) -> Result<Vec<String>, FlowError> {
    store.read(|txn| {
        with_table(txn, Vec::new(), |table| {
            let mut ids = Vec::new();
            for entry in table.iter()? {
                ids.push(entry?.0.value().to_string());
            }
            Ok(ids)
        })
    })
}
