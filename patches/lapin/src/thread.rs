//! Patched for axn-worker (see `PATCHES.md`): the I/O loop is a task on the
//! connection's runtime, not a thread; its handle is the channel on which the
//! task sends its result when it ends.
use crate::Result;
use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) struct JoinHandle(flume::Receiver<Result<()>>);

impl JoinHandle {
    pub(crate) fn new(receiver: flume::Receiver<Result<()>>) -> Self {
        Self(receiver)
    }
}

type Inner = Option<JoinHandle>;

#[derive(Clone)]
pub(crate) struct ThreadHandle(Arc<Mutex<Inner>>);

impl Default for ThreadHandle {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }
}

impl ThreadHandle {
    pub(crate) fn register(&self, handle: JoinHandle) {
        *self.lock_inner() = Some(handle);
    }

    fn take(&self) -> Option<JoinHandle> {
        self.lock_inner().take()
    }

    /// Blocks until the I/O loop has ended. Must not be called from a thread of the
    /// runtime the loop runs on (it would never end); `Connection::run` is for
    /// programs whose runtime runs on other threads.
    pub(crate) fn wait(&self, _context: &'static str) -> Result<()> {
        if let Some(handle) = self.take() {
            // A loop dropped with its runtime sends nothing: it has ended all the same.
            return handle.0.recv().unwrap_or(Ok(()));
        }
        Ok(())
    }

    fn lock_inner(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
