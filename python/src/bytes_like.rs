//! Python bytes-like objects as Rust byte slices, both ways: the data of a
//! `write()` (`bytes`, `bytearray`, `memoryview`, as asyncio accepts), and
//! the writable buffer a `BufferedProtocol` hands out in `get_buffer()`.
//!
//! The only unsafe code of the transports: a buffer export is a raw pointer
//! and a length, valid while the export is held.

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyBufferError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

/// Run `f` on the bytes of `data`, which must be `bytes`, `bytearray` or a
/// C-contiguous `memoryview` (asyncio's `write()` accepts exactly these).
pub(crate) fn with_bytes<R>(data: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(b) = data.cast_exact::<PyBytes>() {
        return Ok(f(b.as_bytes()));
    }
    if !(data.is_instance_of::<PyBytes>()
        || data.is_instance_of::<PyByteArray>()
        || data.is_instance_of::<PyMemoryView>())
    {
        return Err(not_bytes(data));
    }
    let buf = PyUntypedBuffer::get(data)?;
    if !buf.is_c_contiguous() {
        return Err(PyBufferError::new_err(
            "the data of write() must be a C-contiguous buffer",
        ));
    }
    let len = buf.len_bytes();
    let bytes = if len == 0 {
        &[][..]
    } else {
        // SAFETY: the export `buf` is held until the end of this function,
        // and for as long the exporter keeps `len` bytes at `buf_ptr()`
        // alive and in place (a bytearray with an export cannot be resized:
        // it raises `BufferError`). The buffer is C-contiguous, so those
        // are the object's bytes in order. Only this shared view is made,
        // and `f` gets it for the duration of the call.
        unsafe { std::slice::from_raw_parts(buf.buf_ptr().cast::<u8>(), len) }
    };
    Ok(f(bytes))
}

/// asyncio's message for a `write()` of something that is not bytes-like.
pub(crate) fn not_bytes(data: &Bound<'_, PyAny>) -> PyErr {
    let name = data
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    PyTypeError::new_err(format!(
        "data argument must be a bytes-like object, not '{name}'"
    ))
}

/// Copy the start of `data` into `buffer`, a writable buffer that a
/// `BufferedProtocol.get_buffer()` returned; how many bytes were copied
/// (the smaller of the two lengths).
///
/// # Errors
/// `RuntimeError` for an empty buffer (asyncio's message), `BufferError`
/// for a read-only or non-contiguous one.
pub(crate) fn fill(buffer: &Bound<'_, PyAny>, data: &[u8]) -> PyResult<usize> {
    let buf = PyUntypedBuffer::get(buffer)?;
    if buf.readonly() {
        return Err(PyBufferError::new_err(
            "get_buffer() returned a read-only buffer",
        ));
    }
    if !buf.is_c_contiguous() {
        return Err(PyBufferError::new_err(
            "get_buffer() returned a non-contiguous buffer",
        ));
    }
    let n = buf.len_bytes().min(data.len());
    if buf.len_bytes() == 0 {
        return Err(PyRuntimeError::new_err(
            "get_buffer() returned an empty buffer",
        ));
    }
    // SAFETY: the export `buf` is held across the copy; it is writable
    // (checked above) and C-contiguous with at least `n` bytes at
    // `buf_ptr()`. `data` is a Rust slice, so it cannot overlap a Python
    // buffer handed out for writing, and no Python code runs during the
    // copy.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf.buf_ptr().cast::<u8>(), n);
    }
    Ok(n)
}
