//! Registry of live handles.
//!
//! A C handle is an opaque number, never reused within a process (a counter, not an address:
//! addresses are recycled by the allocator, so a stale pointer could otherwise alias a new
//! object). The registry maps it to an `Arc`'d object; each call looks the handle up and works
//! on its own `Arc` clone, so:
//! - a freed (or never created) pointer is rejected with `LAMINA_STATUS_ERROR_INVALID_HANDLE`
//!   instead of being dereferenced: double frees and use-after-free are caught;
//! - freeing a handle while another thread still runs a call on it is safe: the object lives
//!   until that call returns.
//!
//! The cost is one mutex lock per call, negligible next to model work.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::status::{lamina_status, Failure};

/// Shared by all registries, so a model handle never equals a session handle either. Steps of
/// 16 keep handles aligned like real pointers, for hosts that check.
static NEXT_HANDLE: AtomicUsize = AtomicUsize::new(0x1000);

pub(crate) struct Registry<T> {
    live: Mutex<Option<HashMap<usize, Arc<T>>>>,
    what: &'static str,
}

impl<T> Registry<T> {
    pub const fn new(what: &'static str) -> Self {
        Self { live: Mutex::new(None), what }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HashMap<usize, Arc<T>>>> {
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Register `value` and return its handle.
    pub fn insert(&self, value: T) -> *mut T {
        let id = NEXT_HANDLE.fetch_add(16, Ordering::Relaxed);
        self.lock().get_or_insert_with(HashMap::new).insert(id, Arc::new(value));
        std::ptr::without_provenance_mut(id)
    }

    /// The live object behind `ptr`.
    pub fn get(&self, ptr: *const T, name: &str) -> Result<Arc<T>, Failure> {
        if ptr.is_null() {
            return Err(Failure::null(name));
        }
        self.lock().as_ref().and_then(|map| map.get(&(ptr as usize)).cloned()).ok_or_else(|| {
            Failure::new(lamina_status::ErrorInvalidHandle, format!("`{name}` is not a live {} handle (already freed?)", self.what))
        })
    }

    /// Unregister `ptr`; the object is dropped once no call uses it. False if not live.
    pub fn remove(&self, ptr: *const T) -> bool {
        let removed = self.lock().as_mut().and_then(|map| map.remove(&(ptr as usize)));
        removed.is_some()
    }
}
