//! The int8 engine's intermediate results, for comparing it stage by stage with the f32 model
//! (see `lithe::check`). A debugging path: unlike the forward, it allocates.

use super::model::{Input, Int8Model};
use super::workspace::Workspace;
use crate::error::Result;

/// One stage of [`Int8Model::trace`]: its name, its shape and its values.
pub type TracedStage = (String, Vec<usize>, Vec<f32>);

impl Int8Model {
    /// Every stage of a forward on `input`, named as `lithe::check`'s engines name them:
    /// `embeddings` and `layer.i` (hidden states `[B, T, H]` entering and leaving each block; a
    /// Vit's are before its final LayerNorm, and a Vit that drops tokens traces the tokens each
    /// block ran on), then `logits` `[B, classes]`: `(name, shape, values)` each.
    pub fn trace(&self, ws: &mut Workspace, input: Input<'_>) -> Result<Vec<TracedStage>> {
        let mut stages = Vec::with_capacity(self.blocks.len() + 2);
        let h = self.hidden_size();
        let batch = match input {
            Input::Images { batch, .. } | Input::Tokens { batch, .. } => batch,
        };
        self.run_blocks_observed(ws, input, usize::MAX, &mut |block, x| {
            let name = match block {
                None => "embeddings".to_owned(),
                Some(i) => format!("layer.{i}"),
            };
            let shape = vec![batch, x.len() / (batch * h).max(1), h];
            stages.push((name, shape, x.to_vec()));
        })?;
        let logits = self.forward(ws, input)?.to_vec();
        let shape = vec![batch, logits.len() / batch.max(1)];
        stages.push(("logits".to_owned(), shape, logits));
        Ok(stages)
    }
}
