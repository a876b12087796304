//! The CUDA backend asked for a device that is not there (no driver, no GPU, or an ordinal
//! beyond the last device): an error with a message, never a panic. Built with the `cuda`
//! feature only.

use super::*;
use lithe::cuda::CudaDevice;

#[test]
fn missing_devices_are_errors() {
    let mut p = Probe::default();
    for ordinal in [usize::MAX, 4096] {
        p.no_panic(
            &format!("CudaDevice::new({ordinal})"),
            || CudaDevice::new(ordinal).map(|_| ()),
            |r| r.as_ref().is_err_and(|e| !e.to_string().is_empty()),
        );
    }
    // Device 0: whatever this machine has, the answer is a value, not a panic.
    p.no_panic(
        "CudaDevice::new(0)",
        || CudaDevice::new(0).map(|_| ()),
        |_| true,
    );
    p.finish("cuda devices");
}
