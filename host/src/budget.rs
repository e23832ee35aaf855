//! The host-side memory budget of one invocation.
//!
//! Linear memory is capped by the engine's resource limiter, but a plugin can
//! also make the host allocate on its behalf: log lines it keeps, records of
//! the callouts it made, request bodies buffered before they are sent,
//! response bodies waiting for the guest to read them. Each of those charges
//! a [`HostBudget`] shared by everything serving one invocation; once it is
//! spent, records stop (and are counted instead) and buffers are refused.
//! This module is a leaf: it knows nothing of what it counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes one invocation may make the host hold.
#[derive(Debug)]
pub struct HostBudget {
    limit: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
}

impl HostBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<HostBudget> {
        Arc::new(HostBudget {
            limit,
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    /// Takes `bytes` for good (until the invocation ends); false, taking
    /// nothing, when they do not fit.
    pub fn charge(&self, bytes: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|next| *next <= self.limit)
            });
        match taken {
            Ok(before) => {
                self.peak.fetch_max(before + bytes, Ordering::AcqRel);
                true
            }
            Err(_) => false,
        }
    }

    /// Takes `bytes` until the returned guard is dropped.
    pub fn hold(self: &Arc<Self>, bytes: usize) -> Option<Held> {
        self.charge(bytes).then(|| Held {
            budget: self.clone(),
            bytes,
        })
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Most bytes held at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Acquire)
    }
}

/// Bytes of a [`HostBudget`] held until this is dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<HostBudget>,
    bytes: usize,
}

impl Held {
    /// Grows the hold by `more` bytes; false, leaving it as it was, when
    /// they do not fit.
    pub fn grow(&mut self, more: usize) -> bool {
        if self.budget.charge(more) {
            self.bytes += more;
            true
        } else {
            false
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stop_at_the_limit_and_holds_give_back() {
        let b = HostBudget::new(100);
        assert!(b.charge(60));
        assert!(!b.charge(41), "over the limit");
        let mut held = b.hold(40).expect("fits exactly");
        assert!(!held.grow(1));
        assert_eq!(b.used(), 100);
        drop(held);
        assert_eq!(b.used(), 60);
        assert_eq!(b.peak(), 100);
        assert!(!b.charge(usize::MAX), "no overflow");
    }
}
