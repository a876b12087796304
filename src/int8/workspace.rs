//! The arena of one int8 forward, sized once.

/// Every buffer a forward needs, allocated by [`super::Int8Model::workspace`]; a forward with a
/// bigger batch or sequence is an error.
#[allow(dead_code)] // filled in with the engine
pub struct Workspace {
    pub(crate) max_batch: usize,
    pub(crate) max_seq: usize,
}
