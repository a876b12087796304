//! `lithe-capi`: lithe's C ABI (`lithe::ffi`, declared in `include/lithe.h`) packaged as
//! `liblithe_capi.a` and a shared library. Link a C program with the static library plus the
//! system libraries Rust's standard library needs (on Linux `-lpthread -ldl -lm`), e.g.
//!
//! ```text
//! cc -Iinclude examples/c/classify.c target/release/liblithe_capi.a -lpthread -ldl -lm -o classify
//! ```

pub use lithe::ffi::*;
