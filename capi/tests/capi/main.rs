//! The C ABI (`lithe::ffi`, packaged by this crate): its declarations in `include/lithe.h`, its
//! behaviour called from Rust, and the C example built with the system C compiler against
//! `liblithe_capi.a` and run. One test executable for all of it (each links the whole library).

mod abi;
#[cfg(unix)]
mod c_example;
#[path = "../../../tests/common/count_alloc.rs"]
mod count_alloc;
mod no_alloc;
