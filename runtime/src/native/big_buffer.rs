//! Zeroed f32 buffers of many megabytes (a pass's logits: 50 MB for 256 positions of a
//! 49,152-token vocabulary), backed by transparent huge pages where Linux offers them.
//!
//! Why: such a buffer comes fresh from `mmap` on every pass (glibc maps allocations above
//! 32 MiB and unmaps them on free), and the kernel faults it in page by page on first write:
//! 12,000 faults of 4 KiB for 50 MB, a few percent of a forward pass. With `MADV_HUGEPAGE`
//! the same buffer is faulted in 2 MiB at a time. The hint is only a hint: where huge pages
//! are off (`/sys/kernel/mm/transparent_hugepage/enabled` = never) or on other systems, the
//! buffer is an ordinary zeroed `Vec`.

/// Below this, a buffer is left to the allocator as it is.
const HINT_FROM_BYTES: usize = 8 << 20;
/// The huge page size the hint is aligned to (x86-64 and aarch64 with 4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// `vec![0.0f32; len]`, with the huge-page hint on its whole 2 MiB-aligned interior when it is
/// large. The hint is given before anything touches the memory, which `calloc`'s fresh
/// mapping guarantees.
pub fn zeroed(len: usize) -> Vec<f32> {
    let v = vec![0.0f32; len];
    #[cfg(target_os = "linux")]
    if len * 4 >= HINT_FROM_BYTES {
        let start = (v.as_ptr() as usize).next_multiple_of(HUGE_PAGE);
        let end = (v.as_ptr() as usize + len * 4) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: the range lies inside the Vec's allocation, which this function owns;
            // MADV_HUGEPAGE changes how pages are backed, never their contents (still zero).
            // A failure (huge pages disabled, an old kernel) leaves the mapping as it was.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    v
}
