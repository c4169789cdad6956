//! f32 buffers kept from one pass to the next, so that a training step reuses the memory of
//! the step before it instead of asking the system for it again.
//!
//! Why: a training step of the default model at 4 × 256 tokens keeps about 700 MB of
//! activations (the blocks' tapes) and as much again passes through its scratch buffers.
//! Freed into the allocator, those megabytes go back to the kernel (glibc unmaps large
//! chunks and trims its per-thread arenas with `MADV_DONTNEED`), and the next step faults
//! them in again, 4 KiB at a time, each page zeroed by the kernel: 7% of a step's time was
//! page faults. Kept here, a step after the first touches no fresh page.
//!
//! Contract: a request takes the smallest kept buffer that holds it with at most twice its
//! size; failing that, it replaces the largest kept buffer too small for it, so a longer
//! batch does not leave the shorter batch's buffers behind; no buffer is larger than the
//! request it was made for. A pass that repeats (a training step) thus settles on the same
//! buffers step after step. [`BufferPool::clear`] gives everything back to the system (the trainer
//! does when it is done). Thread-safe: concurrent passes take different buffers.

use std::sync::Mutex;

use super::big_buffer;

#[derive(Default)]
pub(crate) struct BufferPool {
    free: Mutex<Vec<Vec<f32>>>,
}

impl BufferPool {
    /// A buffer of `len` elements whose contents are unspecified (values of an earlier pass):
    /// for an output that its producer overwrites whole before anything reads it.
    pub fn take_for_overwrite(&self, len: usize) -> Vec<f32> {
        if len == 0 {
            return Vec::new();
        }
        let kept = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            // The smallest buffer that holds `len` without wasting more than its size (a
            // 50 MB logits chunk must not serve a 6 MB request); else the largest buffer too
            // small for it, to be replaced; else none (a fresh buffer joins the pool).
            let fit = free.iter().enumerate().filter(|(_, b)| (len..=2 * len).contains(&b.capacity())).min_by_key(|(_, b)| b.capacity());
            let small = || free.iter().enumerate().filter(|(_, b)| b.capacity() < len).max_by_key(|(_, b)| b.capacity());
            fit.or_else(small).map(|(i, _)| i).map(|i| free.swap_remove(i))
        };
        match kept {
            Some(mut b) if b.capacity() >= len => {
                // Growing within the capacity writes zeros into the new tail only.
                b.resize(len, 0.0);
                b
            }
            // None fits: the largest too-small buffer (if any) is dropped here, and a fresh
            // one (huge-page backed when large) takes its place.
            _ => big_buffer::zeroed(len),
        }
    }

    /// A zeroed buffer of `len` elements: for an output that is accumulated into.
    pub fn take_zeroed(&self, len: usize) -> Vec<f32> {
        let mut b = self.take_for_overwrite(len);
        b.fill(0.0);
        b
    }

    /// A buffer of `src`'s length holding a copy of it.
    pub fn take_copy(&self, src: &[f32]) -> Vec<f32> {
        let mut b = self.take_for_overwrite(src.len());
        b.copy_from_slice(src);
        b
    }

    /// Keep `buffer` for a later request.
    pub fn give(&self, buffer: Vec<f32>) {
        if buffer.capacity() > 0 {
            self.free.lock().unwrap_or_else(|e| e.into_inner()).push(buffer);
        }
    }

    /// Give every kept buffer back to the system.
    pub fn clear(&self) {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Bytes the pool keeps.
    pub fn kept_bytes(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|b| b.capacity() * 4).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused_and_zeroed_on_request() {
        let pool = BufferPool::default();
        let mut b = pool.take_zeroed(1000);
        let ptr = b.as_ptr();
        b.fill(7.0);
        pool.give(b);
        let again = pool.take_zeroed(800);
        assert_eq!(again.as_ptr(), ptr, "the kept buffer is handed out again");
        assert_eq!(again.len(), 800);
        assert!(again.iter().all(|&v| v == 0.0));
        pool.give(again);
        let grown = pool.take_for_overwrite(1000);
        assert_eq!(grown.len(), 1000);
        assert!(grown[800..].iter().all(|&v| v == 0.0), "growth within the capacity is zero");
    }

    #[test]
    fn the_smallest_fitting_buffer_is_chosen() {
        let pool = BufferPool::default();
        let (big, small) = (pool.take_zeroed(120), pool.take_zeroed(100));
        let small_ptr = small.as_ptr();
        pool.give(big);
        pool.give(small);
        let reused = pool.take_for_overwrite(90);
        assert_eq!(reused.as_ptr(), small_ptr);
        // A buffer over twice the request is left for a request of its size.
        let huge = pool.take_zeroed(10_000);
        let huge_ptr = huge.as_ptr();
        pool.give(huge);
        let b = pool.take_for_overwrite(400);
        assert_ne!(b.as_ptr(), huge_ptr);
        let reused = pool.take_for_overwrite(9000);
        assert_eq!(reused.as_ptr(), huge_ptr);
    }

    #[test]
    fn a_larger_request_replaces_a_kept_buffer_rather_than_adding_one() {
        let pool = BufferPool::default();
        let (a, b) = (pool.take_zeroed(100), pool.take_zeroed(100));
        pool.give(a);
        pool.give(b);
        assert_eq!(pool.kept_bytes(), 2 * 100 * 4);
        let big = pool.take_zeroed(10_000);
        pool.give(big);
        // One 100-element buffer was dropped for the 10,000-element one.
        assert_eq!(pool.kept_bytes(), 100 * 4 + 10_000 * 4);
        pool.clear();
        assert_eq!(pool.kept_bytes(), 0);
        assert!(pool.take_for_overwrite(0).is_empty());
    }
}
