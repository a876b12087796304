//! WordPiece tokenization through the `tokenizers` crate (Hugging Face's own implementation, so
//! ids match the reference BERT tokenizer exactly), batched into padded `[B, T]` id arrays.
//!
//! Two ways in: a BERT `vocab.txt` ([`Tokenizer::from_vocab`]: BERT normalizer, BERT
//! pre-tokenizer, WordPiece with `##` continuations and `[UNK]`, `[CLS] ... [SEP]`), or a
//! `tokenizer.json` ([`Tokenizer::from_file`]) holding any pipeline the crate understands. Any
//! truncation or padding stored in a `tokenizer.json` is replaced by the per-call `max_len` of
//! [`Tokenizer::encode_batch`].

use crate::error::{Error, Result};
use std::path::Path;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, Encoding, PaddingDirection, PaddingParams, PaddingStrategy, PostProcessor,
    TruncationDirection, TruncationParams, TruncationStrategy, pad_encodings, truncate_encodings,
};

/// A batch of tokenized texts, right-padded to one length. All arrays are row-major `[B, T]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, `[batch, seq]`; padding positions hold the pad id.
    pub ids: Vec<u32>,
    /// 1 for a real token, 0 for padding, `[batch, seq]`.
    pub attention_mask: Vec<u32>,
    /// Segment ids (0 for a single sentence), `[batch, seq]`.
    pub token_type_ids: Vec<u32>,
    /// Number of texts `B`.
    pub batch: usize,
    /// Padded length `T`: the longest encoding of the batch, at most `max_len`.
    pub seq: usize,
}

impl Encoded {
    /// The ids as `usize` (what [`crate::Graph::embedding`] takes).
    pub fn ids_usize(&self) -> Vec<usize> {
        self.ids.iter().map(|&i| i as usize).collect()
    }

    /// The ids of row `b` (padding included).
    pub fn row(&self, b: usize) -> &[u32] {
        &self.ids[b * self.seq..(b + 1) * self.seq]
    }

    /// The number of real (non-padding) tokens of each row.
    pub fn lengths(&self) -> Vec<usize> {
        self.attention_mask
            .chunks(self.seq.max(1))
            .take(self.batch)
            .map(|m| m.iter().filter(|&&v| v != 0).count())
            .collect()
    }
}

/// A tokenizer: text in, padded id batches out.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pad_id: u32,
    pad_token: String,
}

/// Wraps a `tokenizers` error as [`Error::Format`] about `what`.
fn format_err(what: &str) -> impl Fn(tokenizers::Error) -> Error + '_ {
    move |e| Error::Format {
        what: what.to_string(),
        msg: e.to_string(),
    }
}

impl Tokenizer {
    /// The BERT WordPiece tokenizer of a `vocab.txt` (one token per line, the line number is the
    /// id), as Hugging Face's `BertTokenizerFast`: text cleaning and CJK spacing, lowercasing and
    /// accent stripping when `lowercase` (uncased models), whitespace + punctuation
    /// pre-tokenization, greedy longest-match WordPiece with `##` continuations (a word of more
    /// than 100 characters, or one that cannot be covered, becomes `[UNK]`), then
    /// `[CLS] ... [SEP]`. `[PAD] [UNK] [CLS] [SEP] [MASK]` found in the text are kept whole.
    ///
    /// [`Error::Format`] naming the file if it cannot be read or lacks `[UNK]`, `[CLS]`,
    /// `[SEP]` or `[PAD]`.
    pub fn from_vocab(path: &Path, lowercase: bool) -> Result<Self> {
        let what = path.display().to_string();
        let path_str = path.to_str().ok_or_else(|| Error::Format {
            what: what.clone(),
            msg: "path is not UTF-8".into(),
        })?;
        let model = WordPiece::from_file(path_str)
            .unk_token("[UNK]".into())
            .build()
            .map_err(format_err(&what))?;
        let mut inner = tokenizers::Tokenizer::new(model);
        let id = |token: &str| {
            inner.token_to_id(token).ok_or_else(|| Error::Format {
                what: what.clone(),
                msg: format!("the vocabulary has no {token} token"),
            })
        };
        id("[UNK]")?;
        let (cls, sep, pad) = (id("[CLS]")?, id("[SEP]")?, id("[PAD]")?);
        inner
            .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .map_err(format_err(&what))?;
        inner
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(BertProcessing::new(
                ("[SEP]".into(), sep),
                ("[CLS]".into(), cls),
            )))
            .with_decoder(Some(WordPieceDecoder::default()));
        let specials: Vec<AddedToken> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .into_iter()
            .filter(|t| inner.token_to_id(t).is_some())
            .map(|t| AddedToken::from(t, true))
            .collect();
        inner
            .add_special_tokens(specials)
            .map_err(format_err(&what))?;
        Ok(Tokenizer {
            inner,
            pad_id: pad,
            pad_token: "[PAD]".into(),
        })
    }

    /// A tokenizer saved by Hugging Face `tokenizers` (`tokenizer.json`). The pad token is the
    /// one of the file's padding section if it has one, else `[PAD]` or `<pad>` if the
    /// vocabulary has it, else id 0 (masked out by the attention mask either way).
    /// [`Error::Format`] naming the file if it cannot be read or parsed.
    pub fn from_file(path: &Path) -> Result<Self> {
        let what = path.display().to_string();
        let mut inner = tokenizers::Tokenizer::from_file(path).map_err(format_err(&what))?;
        let (pad_id, pad_token) = match inner.get_padding() {
            Some(p) => (p.pad_id, p.pad_token.clone()),
            None => ["[PAD]", "<pad>"]
                .into_iter()
                .find_map(|t| inner.token_to_id(t).map(|id| (id, t.to_string())))
                .unwrap_or((0, "[PAD]".to_string())),
        };
        inner.with_padding(None);
        inner.with_truncation(None).map_err(format_err(&what))?;
        Ok(Tokenizer {
            inner,
            pad_id,
            pad_token,
        })
    }

    /// Writes the whole pipeline as a `tokenizer.json` that [`Tokenizer::from_file`] (and
    /// Python's `tokenizers`) read back.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, true)
            .map_err(format_err(&path.display().to_string()))
    }

    /// The underlying `tokenizers` tokenizer (no truncation or padding set).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Vocabulary size, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token of `id`, if any.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id used for padding.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Number of special tokens the post-processor adds to one sequence (2 for BERT).
    pub fn num_special_tokens(&self) -> usize {
        self.inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false))
    }

    /// Tokenizes one text (see [`Tokenizer::encode_batch`]).
    pub fn encode(&self, text: &str, max_len: usize) -> Result<Encoded> {
        self.encode_batch(&[text], max_len)
    }

    /// Tokenizes `texts` (in parallel on the current rayon pool; `TOKENIZERS_PARALLELISM=false`
    /// turns that off) with special tokens, truncates each to `max_len` tokens
    /// special tokens included (the text is cut, `[SEP]` stays last, as Hugging Face's
    /// `truncation=True, max_length=max_len`), and right-pads all to the longest of the batch.
    ///
    /// [`Error::InvalidArgument`] if `max_len` cannot hold the special tokens plus one token.
    pub fn encode_batch(&self, texts: &[&str], max_len: usize) -> Result<Encoded> {
        const OP: &str = "Tokenizer::encode_batch";
        let added = self.num_special_tokens();
        if max_len <= added {
            return Err(Error::invalid(
                OP,
                format!("max_len {max_len} leaves no room next to {added} special tokens"),
            ));
        }
        let fail = |e: tokenizers::Error| Error::invalid(OP, e.to_string());
        let raw = self
            .inner
            .encode_batch(texts.to_vec(), false)
            .map_err(fail)?;
        let truncation = TruncationParams {
            direction: TruncationDirection::Right,
            max_length: max_len - added,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        };
        let mut encodings: Vec<Encoding> = raw
            .into_iter()
            .map(|e| {
                let (e, _) = truncate_encodings(e, None, &truncation)?;
                match self.inner.get_post_processor() {
                    Some(p) => p.process(e, None, true),
                    None => Ok(e),
                }
            })
            .collect::<tokenizers::Result<_>>()
            .map_err(fail)?;
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id: self.pad_id,
            pad_type_id: 0,
            pad_token: self.pad_token.clone(),
        };
        pad_encodings(&mut encodings, &padding).map_err(fail)?;
        let batch = encodings.len();
        let seq = encodings.first().map_or(0, Encoding::len);
        let mut out = Encoded {
            ids: Vec::with_capacity(batch * seq),
            attention_mask: Vec::with_capacity(batch * seq),
            token_type_ids: Vec::with_capacity(batch * seq),
            batch,
            seq,
        };
        for e in &encodings {
            debug_assert_eq!(e.len(), seq);
            out.ids.extend_from_slice(e.get_ids());
            out.attention_mask.extend_from_slice(e.get_attention_mask());
            out.token_type_ids.extend_from_slice(e.get_type_ids());
        }
        Ok(out)
    }

    /// Token strings of one text with special tokens and no truncation, for inspection.
    pub fn tokens(&self, text: &str) -> Result<Vec<String>> {
        let e = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::invalid("Tokenizer::tokens", e.to_string()))?;
        Ok(e.get_tokens().to_vec())
    }

    /// Text back from ids (WordPiece pieces joined), optionally without special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::invalid("Tokenizer::decode", e.to_string()))
    }
}
