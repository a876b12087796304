//! placeholder
use crate::gemm_i8::I8Kernels;
pub fn kernels() -> I8Kernels {
    I8Kernels::scalar()
}
