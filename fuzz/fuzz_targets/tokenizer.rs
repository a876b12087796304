//! The BERT WordPiece tokenizer (`bert-base-uncased` vocabulary) on arbitrary text: encoding
//! one text and a batch, with a fuzzed length limit, and decoding arbitrary ids.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lithe::data::Tokenizer;
use std::path::Path;

thread_local! {
    static TOKENIZER: Tokenizer = {
        lithe_fuzz::single_threaded();
        let vocab = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data/vocab/bert-base-uncased-vocab.txt");
        Tokenizer::from_vocab(&vocab, true).expect("the BERT vocabulary loads")
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    // The first byte: the length limit (0..=63, so the too-short limits are hit too) and
    // whether to skip special tokens when decoding.
    let max_len = usize::from(head & 0x3f);
    let skip_special = head & 0x40 != 0;
    let text = String::from_utf8_lossy(rest);
    TOKENIZER.with(|t| {
        if let Ok(e) = t.encode(&text, max_len) {
            check(&e, 1, max_len);
        }
        let texts: Vec<&str> = text.split('\u{1}').collect();
        if let Ok(e) = t.encode_batch(&texts, max_len) {
            check(&e, texts.len(), max_len);
        }
        let ids: Vec<u32> = rest
            .chunks(2)
            .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
            .collect();
        let _ = t.decode(&ids, skip_special);
        // Ids beyond the vocabulary too.
        let wide: Vec<u32> = rest
            .chunks(4)
            .map(|c| c.iter().fold(0u32, |a, &b| a << 8 | u32::from(b)))
            .collect();
        let _ = t.decode(&wide, skip_special);
    });
});

fn check(e: &lithe::data::Encoded, batch: usize, max_len: usize) {
    assert_eq!(e.batch, batch, "one row per text");
    assert!(e.seq <= max_len, "seq {} over the limit {max_len}", e.seq);
    assert_eq!(e.ids.len(), batch * e.seq);
    assert_eq!(e.attention_mask.len(), batch * e.seq);
}
