//! The key bucket as the MVCC store reads and writes it: revision keys in
//! etcd's 17/18-byte form, encoded KeyValues as values.

use std::path::PathBuf;
use std::sync::Arc;

use prost::Message;
use redb::{ReadOnlyTable, ReadableTable, Table};

use super::{entry_bytes, schema, BackendError, WriteTx};
use crate::mvcc::{decode_kv, KeyBucket, KeyBucketMut, MvccError, Revision, ScanVisitor};
use crate::pb::mvccpb::KeyValue;

fn mvcc_error(e: BackendError) -> MvccError {
    MvccError::Backend(e.to_string())
}

/// Reads `rev`'s value from any table handle.
fn get<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    rev: Revision,
    err: &dyn Fn(&dyn std::fmt::Display) -> BackendError,
) -> Result<Option<KeyValue>, MvccError> {
    let found = table
        .get(&rev.to_bytes(false)[..])
        .map_err(|e| mvcc_error(err(&e)))?;
    found.map(|v| decode_kv(rev, v.value())).transpose()
}

fn scan<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    from: Revision,
    to_main: i64,
    visit: &mut ScanVisitor<'_>,
    err: &dyn Fn(&dyn std::fmt::Display) -> BackendError,
) -> Result<(), MvccError> {
    let start = from.to_bytes(false);
    let range = table.range(&start[..]..).map_err(|e| mvcc_error(err(&e)))?;
    for item in range {
        let (k, v) = item.map_err(|e| mvcc_error(err(&e)))?;
        let (rev, tombstone) = schema::parse_revision(k.value())
            .map_err(|e| MvccError::Corrupt(format!("key bucket: {e}")))?;
        if rev.main > to_main || !visit(rev, tombstone, v.value())? {
            break;
        }
    }
    Ok(())
}

/// The key bucket of a read transaction.
pub struct ReadKeyTable {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
    path: Arc<PathBuf>,
}

impl ReadKeyTable {
    pub(super) fn new(
        table: ReadOnlyTable<&'static [u8], &'static [u8]>,
        path: Arc<PathBuf>,
    ) -> ReadKeyTable {
        ReadKeyTable { table, path }
    }

    fn err(&self, e: &dyn std::fmt::Display) -> BackendError {
        BackendError::new(&self.path, e)
    }
}

impl KeyBucket for ReadKeyTable {
    fn get(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError> {
        get(&self.table, rev, &|e| self.err(e))
    }

    fn scan(
        &self,
        from: Revision,
        to_main: i64,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), MvccError> {
        scan(&self.table, from, to_main, visit, &|e| self.err(e))
    }
}

/// The key bucket of the applier's write transaction. Errors are also
/// recorded in the transaction, so a batch whose store operation swallowed
/// one still cannot be committed.
pub struct WriteKeyTable<'t> {
    table: Table<'t, &'static [u8], &'static [u8]>,
    tx: &'t WriteTx,
}

impl<'t> WriteKeyTable<'t> {
    pub(super) fn new(tx: &'t WriteTx) -> Result<WriteKeyTable<'t>, BackendError> {
        let table = tx
            .txn
            .open_table(schema::KEY)
            .map_err(|e| tx.backend.error(e))?;
        Ok(WriteKeyTable { table, tx })
    }

    fn err(&self, e: &dyn std::fmt::Display) -> BackendError {
        self.tx.record_failure(self.tx.backend.error(e))
    }
}

impl KeyBucket for WriteKeyTable<'_> {
    fn get(&self, rev: Revision) -> Result<Option<KeyValue>, MvccError> {
        get(&self.table, rev, &|e| self.err(e))
    }

    fn scan(
        &self,
        from: Revision,
        to_main: i64,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), MvccError> {
        scan(&self.table, from, to_main, visit, &|e| self.err(e))
    }
}

impl KeyBucketMut for WriteKeyTable<'_> {
    fn insert(&mut self, rev: Revision, tombstone: bool, kv: &KeyValue) -> Result<(), MvccError> {
        let key = rev.to_bytes(tombstone);
        let value = kv.encode_to_vec();
        let tx = self.tx;
        let old = self
            .table
            .insert(&key[..], &value[..])
            .map_err(|e| mvcc_error(tx.record_failure(tx.backend.error(e))))?
            .map(|old| entry_bytes(&key, old.value()));
        self.tx
            .add_live(entry_bytes(&key, &value) - old.unwrap_or_default());
        Ok(())
    }

    fn remove(&mut self, rev: Revision, tombstone: bool) -> Result<(), MvccError> {
        let key = rev.to_bytes(tombstone);
        let tx = self.tx;
        let old = self
            .table
            .remove(&key[..])
            .map_err(|e| mvcc_error(tx.record_failure(tx.backend.error(e))))?
            .map(|old| entry_bytes(&key, old.value()));
        self.tx.add_live(-old.unwrap_or_default());
        Ok(())
    }
}
