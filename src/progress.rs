//! Progress reports of long work (sampling, tiled encode/decode), which can also stop it.
//!
//! Any `FnMut(done, total)` closure is a [`Progress`] that never stops the work; wrap a closure
//! that returns `false` to stop in [`Cancellable`]. Stopped work ends in [`Error::Cancelled`].

use crate::error::{Error, Result};

/// Told `(done, total)` after each unit of work; returning an error stops the work.
pub trait Progress {
    /// Reports progress; `Err(Error::Cancelled)` stops the work.
    fn report(&mut self, done: usize, total: usize) -> Result<()>;
}

impl<F: FnMut(usize, usize)> Progress for F {
    fn report(&mut self, done: usize, total: usize) -> Result<()> {
        self(done, total);
        Ok(())
    }
}

/// A progress closure that returns whether to go on (`false` cancels).
pub struct Cancellable<F>(pub F);

impl<F: FnMut(usize, usize) -> bool> Progress for Cancellable<F> {
    fn report(&mut self, done: usize, total: usize) -> Result<()> {
        if (self.0)(done, total) { Ok(()) } else { Err(Error::Cancelled) }
    }
}
