//! The int8 engine's intermediate results, for comparing it stage by stage with the f32 model
//! (see `lithe::check`). A debugging path: unlike the forward, it allocates.

use super::model::{Input, Int8Model};
use super::workspace::Workspace;
use crate::error::Result;

impl Int8Model {
    /// Every stage of a forward on `input`, named as `lithe::check`'s engines name them:
    /// `embeddings` and `layer.i` (hidden states `[B, T, H]` entering and leaving each block; a
    /// Vit's are before its final LayerNorm, and a Vit that drops tokens traces the tokens each
    /// block ran on), then `logits` `[B, classes]`.
    pub fn trace(&self, ws: &mut Workspace, input: Input<'_>) -> Result<Vec<(String, Vec<f32>)>> {
        let mut stages = Vec::with_capacity(self.blocks.len() + 2);
        self.run_blocks_observed(ws, input, usize::MAX, &mut |block, x| {
            let name = match block {
                None => "embeddings".to_owned(),
                Some(i) => format!("layer.{i}"),
            };
            stages.push((name, x.to_vec()));
        })?;
        let logits = self.forward(ws, input)?.to_vec();
        stages.push(("logits".to_owned(), logits));
        Ok(stages)
    }
}
