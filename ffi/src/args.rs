//! Converting C arguments: strings, versioned params structs, out-parameters.

use std::ffi::{c_char, CStr, CString};

use crate::status::{lamina_status, Failure};

/// Borrow a required NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for the returned lifetime.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, name: &'static str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    lamina::error::utf8(name, bytes).map_err(Failure::from)
}

/// Borrow an optional string argument (NULL = None).
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(ptr: *const c_char, name: &'static str) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { str_arg(ptr, name) }.map(Some)
    }
}

/// A params struct whose first field is `size_t struct_size`.
///
/// # Safety
/// Implementors are `#[repr(C)]`, start with a `usize` struct_size, and every bit pattern a C
/// caller may write in the remaining fields is a valid value (plain numbers, bools written by
/// C as 0/1, pointers).
pub(crate) unsafe trait Versioned: Copy {
    const NAME: &'static str;
    fn defaults() -> Self;
}

/// Read a caller's params struct: NULL means defaults; fields beyond the caller's
/// `struct_size` (an older caller) keep their defaults; fields of a newer caller that this
/// library does not know are ignored.
///
/// # Safety
/// `ptr` is NULL or points to at least `struct_size` readable bytes.
pub(crate) unsafe fn read_params<T: Versioned>(ptr: *const T) -> Result<T, Failure> {
    let mut value = T::defaults();
    if ptr.is_null() {
        return Ok(value);
    }
    // SAFETY: every params struct starts with a usize (trait contract); read unaligned in case
    // a foreign caller packed it oddly.
    let declared = unsafe { std::ptr::read_unaligned(ptr.cast::<usize>()) };
    let header = std::mem::size_of::<usize>();
    if declared < header {
        return Err(Failure::new(
            lamina_status::ErrorInvalidArgument,
            format!("{}.struct_size is {declared}; initialise the struct with {}_init(&params, sizeof params)", T::NAME, T::NAME),
        ));
    }
    let n = declared.min(std::mem::size_of::<T>());
    // SAFETY: the caller vouches for `declared` readable bytes at `ptr`; we copy at most that
    // many into a value of T, whose fields accept any bit pattern (trait contract).
    unsafe { std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&mut value as *mut T).cast::<u8>(), n) };
    // struct_size reflects this library's layout from here on.
    // SAFETY: T starts with a usize.
    unsafe { std::ptr::write_unaligned((&mut value as *mut T).cast::<usize>(), std::mem::size_of::<T>()) };
    Ok(value)
}

/// Fill a caller's params struct with defaults: the first `struct_size` bytes of ours (the
/// caller's struct may be older and shorter, or newer and longer; a newer caller's extra
/// fields are zeroed), with `struct_size` set to the caller's size.
///
/// # Safety
/// `ptr` is NULL or valid for writes of `struct_size` bytes.
pub(crate) unsafe fn init_params<T: Versioned>(ptr: *mut T, struct_size: usize) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(Failure::null(T::NAME));
    }
    let header = std::mem::size_of::<usize>();
    if struct_size < header {
        return Err(Failure::new(
            lamina_status::ErrorInvalidArgument,
            format!("struct_size {struct_size} is too small for {}; pass sizeof({})", T::NAME, T::NAME),
        ));
    }
    let defaults = T::defaults();
    let ours = std::mem::size_of::<T>();
    let n = struct_size.min(ours);
    // SAFETY: the caller vouches for `struct_size` writable bytes; we write at most that many.
    unsafe {
        std::ptr::copy_nonoverlapping((&defaults as *const T).cast::<u8>(), ptr.cast::<u8>(), n);
        if struct_size > ours {
            std::ptr::write_bytes(ptr.cast::<u8>().add(ours), 0, struct_size - ours);
        }
        std::ptr::write_unaligned(ptr.cast::<usize>(), struct_size);
    }
    Ok(())
}

/// Check a required out-pointer before doing any work.
pub(crate) fn require_out<T>(out: *mut T, name: &'static str) -> Result<(), Failure> {
    if out.is_null() {
        Err(Failure::null(name))
    } else {
        Ok(())
    }
}

/// A Rust string as a caller-owned C string (freed with `lamina_string_free`). Interior NULs,
/// which generated text never contains, are escaped rather than truncating the text.
pub(crate) fn owned_c_string(s: &str) -> *mut c_char {
    let c = CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "\\0")).unwrap_or_default());
    c.into_raw()
}

/// Write `value` to an optional out-parameter: nothing when `out` is NULL.
///
/// # Safety
/// `out` is NULL or valid for writing a `T`.
pub(crate) unsafe fn write_optional<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-NULL, and the caller vouches that it is writable.
        unsafe { out.write(value) };
    }
}

/// `value` serialised as JSON, as a caller-owned C string. Serialising lamina's own info types
/// cannot fail on valid data; if it does, that is a bug in lamina, reported as such.
pub(crate) fn json_c_string(value: &impl serde::Serialize) -> Result<*mut c_char, Failure> {
    let json = serde_json::to_string(value).map_err(|e| lamina::Error::Internal(format!("could not serialise the JSON reply: {e}")))?;
    Ok(owned_c_string(&json))
}
