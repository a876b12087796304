//! How checkpoint tensor names map to a module's parameter names.
//!
//! A module names its parameters like Hugging Face's base models (`BertModel`:
//! `embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.query.weight`...).
//! Checkpoints in the wild differ from that in two ways, both accepted:
//!
//! - **a model prefix**: task models (`BertForSequenceClassification`, `BertForMaskedLM`,
//!   `ViTForImageClassification`) keep the base model under `bert.` / `vit.`
//!   (`bert.embeddings.word_embeddings.weight`) beside their own heads (`classifier.weight`).
//!   A parameter `p` is looked up as `p`, then `bert.p` / `vit.p`, then (when `p` itself starts
//!   with a prefix) `p` without it.
//! - **old LayerNorm names**: checkpoints converted from the original TensorFlow BERT call the
//!   LayerNorm scale and shift `gamma` and `beta`; they are read as `weight` and `bias`
//!   ([`canonical_name`]).
//!
//! Non-parameter buffers that PyTorch BERT checkpoints carry (`embeddings.position_ids`,
//! `embeddings.token_type_ids`, integer tensors) are skipped when no parameter takes them
//! ([`is_ignorable_buffer`]).

use std::borrow::Cow;

/// The prefixes under which Hugging Face task models keep their base model.
pub const MODEL_PREFIXES: &[&str] = &["bert.", "vit."];

/// The checkpoint name with old TensorFlow LayerNorm names renamed: a last component `gamma` /
/// `beta` after a LayerNorm component (`...LayerNorm.gamma`, `...layer_norm.beta`) becomes
/// `weight` / `bias`. Other names are returned unchanged.
pub fn canonical_name(name: &str) -> Cow<'_, str> {
    let Some((head, last)) = name.rsplit_once('.') else {
        return Cow::Borrowed(name);
    };
    let new_last = match last {
        "gamma" => "weight",
        "beta" => "bias",
        _ => return Cow::Borrowed(name),
    };
    let parent = head.rsplit('.').next().unwrap_or(head);
    let lower = parent.to_ascii_lowercase();
    if lower.contains("layernorm") || lower.contains("layer_norm") {
        Cow::Owned(format!("{head}.{new_last}"))
    } else {
        Cow::Borrowed(name)
    }
}

/// The names under which a parameter called `param` may appear in a checkpoint (after
/// [`canonical_name`]), most specific first: `param`, each of [`MODEL_PREFIXES`] + `param`, and
/// `param` without its model prefix when it has one.
pub fn candidate_names(param: &str) -> Vec<String> {
    let mut out = vec![param.to_string()];
    for prefix in MODEL_PREFIXES {
        match param.strip_prefix(prefix) {
            Some(rest) => out.push(rest.to_string()),
            None => out.push(format!("{prefix}{param}")),
        }
    }
    out
}

/// The canonical base-model name of a checkpoint tensor: [`canonical_name`], then without a
/// leading [`MODEL_PREFIXES`] entry (`bert.encoder.layer.0.output.LayerNorm.gamma` →
/// `encoder.layer.0.output.LayerNorm.weight`).
pub fn base_model_name(name: &str) -> String {
    let name = canonical_name(name);
    for prefix in MODEL_PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    name.into_owned()
}

/// Whether a checkpoint tensor that no parameter takes is a known non-parameter buffer that a
/// load skips silently even when strict: the index buffers `position_ids` and `token_type_ids`
/// that PyTorch BERT checkpoints store (as I64).
pub fn is_ignorable_buffer(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    matches!(last, "position_ids" | "token_type_ids")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layernorm_gamma_beta_are_renamed() {
        assert_eq!(
            canonical_name("encoder.layer.0.output.LayerNorm.gamma"),
            "encoder.layer.0.output.LayerNorm.weight"
        );
        assert_eq!(
            canonical_name("embeddings.LayerNorm.beta"),
            "embeddings.LayerNorm.bias"
        );
        assert_eq!(canonical_name("x.layer_norm.beta"), "x.layer_norm.bias");
        // Only LayerNorm scale/shift; a parameter genuinely called `beta` keeps its name.
        assert_eq!(canonical_name("schedule.beta"), "schedule.beta");
        assert_eq!(canonical_name("gamma"), "gamma");
        assert_eq!(canonical_name("a.LayerNorm.weight"), "a.LayerNorm.weight");
    }

    #[test]
    fn candidates_and_base_names() {
        assert_eq!(
            candidate_names("pooler.dense.bias"),
            vec![
                "pooler.dense.bias",
                "bert.pooler.dense.bias",
                "vit.pooler.dense.bias"
            ]
        );
        assert_eq!(
            candidate_names("bert.pooler.dense.bias"),
            vec![
                "bert.pooler.dense.bias",
                "pooler.dense.bias",
                "vit.bert.pooler.dense.bias"
            ]
        );
        assert_eq!(
            base_model_name("bert.embeddings.LayerNorm.gamma"),
            "embeddings.LayerNorm.weight"
        );
        assert_eq!(base_model_name("classifier.weight"), "classifier.weight");
        assert!(is_ignorable_buffer("embeddings.position_ids"));
        assert!(is_ignorable_buffer("bert.embeddings.token_type_ids"));
        assert!(!is_ignorable_buffer(
            "embeddings.position_embeddings.weight"
        ));
    }
}
