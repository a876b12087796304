//! The machinery every entry point of [`super`] shares: failures with a status and a message,
//! the thread's last error, the panic guard, and checked conversions of C pointers.

use super::LitheStatus;
use crate::error::Error;
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// A failed call: its status and message.
pub(super) struct Failure(pub(super) LitheStatus, pub(super) String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Io(_)
            | Error::File { .. }
            | Error::Format { .. }
            | Error::MissingTensor { .. }
            | Error::UnexpectedTensor { .. }
            | Error::TensorShape { .. }
            | Error::TensorDtype { .. } => LitheStatus::File,
            Error::Graph(_) => LitheStatus::Internal,
            _ => LitheStatus::InvalidArgument,
        };
        Failure(status, e.to_string())
    }
}

pub(super) fn invalid(msg: impl Into<String>) -> Failure {
    Failure(LitheStatus::InvalidArgument, msg.into())
}

thread_local! {
    /// The message of this thread's last failed call.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// The thread's last error message, valid until it is next set on this thread.
pub(super) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

pub(super) fn set_last_error(msg: &str) {
    // Clearing an already empty message must not allocate: every call starts by clearing it,
    // and a successful forward allocates nothing.
    if msg.is_empty() && LAST_ERROR.with(|e| e.borrow().is_empty()) {
        return;
    }
    // A message with an interior NUL is cut there rather than lost.
    let bytes: Vec<u8> = msg.bytes().take_while(|&b| b != 0).collect();
    let c = CString::new(bytes).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs `f` with the last error cleared; on an error or a panic stores the message and returns
/// `on_error` with the failure's status.
pub(super) fn guard<T>(
    name: &str,
    on_error: impl FnOnce(LitheStatus) -> T,
    f: impl FnOnce() -> Result<T, Failure>,
) -> T {
    set_last_error("");
    let failure = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => return v,
        Ok(Err(failure)) => failure,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Failure(LitheStatus::Internal, format!("internal error: {what}"))
        }
    };
    set_last_error(&format!("{name}: {}", failure.1));
    on_error(failure.0)
}

/// Runs `f` for a call that returns a status.
pub(super) fn status(name: &str, f: impl FnOnce() -> Result<(), Failure>) -> LitheStatus {
    guard(name, |s| s, || f().map(|()| LitheStatus::Ok))
}

/// `&T` from a handle pointer, or `NullPointer` naming the argument.
///
/// # Safety
/// `p` is null or points to a live `T` that nothing mutates for the returned lifetime.
pub(super) unsafe fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: the caller guarantees `p` is null or valid; `as_ref` maps null to None.
    unsafe { p.as_ref() }
        .ok_or_else(|| Failure(LitheStatus::NullPointer, format!("{what} is null")))
}

/// `&mut T` from a handle pointer, or `NullPointer` naming the argument.
///
/// # Safety
/// `p` is null or points to a live `T` that nothing else uses for the returned lifetime.
pub(super) unsafe fn handle_mut<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: as for `handle`, plus exclusive access, which the caller guarantees.
    unsafe { p.as_mut() }
        .ok_or_else(|| Failure(LitheStatus::NullPointer, format!("{what} is null")))
}

/// A slice of `len` elements at `p`; `p` may be null only when `len` is 0.
///
/// # Safety
/// A non-null `p` points to `len` initialized, readable `T`s that live for the returned lifetime.
pub(super) unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T], Failure> {
    if p.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(Failure(LitheStatus::NullPointer, format!("{what} is null")))
        };
    }
    if len
        .checked_mul(size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(invalid(format!("{what}: {len} elements is too many")));
    }
    // SAFETY: `p` is non-null and aligned for T (the caller's contract), `len` elements are
    // readable and the byte size fits an isize (checked above).
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A mutable slice of `len` elements at `p`, which must not be null.
///
/// # Safety
/// `p` points to `len` writable `T`s that nothing else uses for the returned lifetime.
pub(super) unsafe fn slice_mut<'a, T>(
    p: *mut T,
    len: usize,
    what: &str,
) -> Result<&'a mut [T], Failure> {
    if p.is_null() {
        return Err(Failure(LitheStatus::NullPointer, format!("{what} is null")));
    }
    if len
        .checked_mul(size_of::<T>())
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(invalid(format!("{what}: {len} elements is too many")));
    }
    // SAFETY: non-null, `len` writable elements, exclusive (the caller's contract); size checked.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// A path from a NUL-terminated C string (any bytes on Unix, UTF-8 elsewhere).
///
/// # Safety
/// A non-null `p` points to a NUL-terminated string that lives for the returned lifetime.
pub(super) unsafe fn c_path<'a>(p: *const c_char, what: &str) -> Result<&'a Path, Failure> {
    if p.is_null() {
        return Err(Failure(LitheStatus::NullPointer, format!("{what} is null")));
    }
    // SAFETY: non-null and NUL-terminated (the caller's contract).
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    #[cfg(unix)]
    return Ok(Path::new(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes),
    ));
    #[cfg(not(unix))]
    return std::str::from_utf8(bytes)
        .map(Path::new)
        .map_err(|e| invalid(format!("{what} is not UTF-8: {e}")));
}

/// A UTF-8 string from a NUL-terminated C string.
///
/// # Safety
/// A non-null `p` points to a NUL-terminated string that lives for the returned lifetime.
pub(super) unsafe fn c_str<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure(LitheStatus::NullPointer, format!("{what} is null")));
    }
    // SAFETY: non-null and NUL-terminated (the caller's contract).
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|e| invalid(format!("{what} is not UTF-8: {e}")))
}

/// `n * m`, or an error instead of an overflow.
pub(super) fn product(n: usize, m: usize, what: &str) -> Result<usize, Failure> {
    n.checked_mul(m)
        .ok_or_else(|| invalid(format!("{what}: {n} x {m} overflows")))
}
