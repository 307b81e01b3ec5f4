//! WordPiece training and loading, and interchange with Hugging Face's Python tokenizers.

mod common;

use common::*;
use pt_kit::text::{load_tokenizer, train_wordpiece, SPECIAL_TOKENS};
use pt_mlm::text_tokenizer::{SpecialIds, TextTokenizer};
use std::process::Command;

#[test]
fn trained_tokenizer_round_trips_and_has_the_special_ids() {
    let s = Scratch::new();
    let corpus = s.write("corpus.txt", generated_lines(400, 1).join("\n"));
    let out = s.path("tok/tokenizer.json");
    train_wordpiece(&[corpus], 200, 2, true, &out).unwrap();

    let tok = load_tokenizer(&out).unwrap();
    for (i, t) in SPECIAL_TOKENS.iter().enumerate() {
        assert_eq!(tok.token_to_id(t), Some(i as u32), "{t}");
    }
    let size = tok.get_vocab_size(true);
    assert!(size > 50 && size <= 200, "{size}");
    let enc = tok.encode("The River runs OVER the stone.", true).unwrap();
    let ids = enc.get_ids();
    assert_eq!((ids[0], ids[ids.len() - 1]), (2, 3), "[CLS] ... [SEP]: {:?}", enc.get_tokens());
    assert!(!ids.contains(&1), "known words must not be [UNK]: {:?}", enc.get_tokens());
    assert_eq!(tok.decode(ids, true).unwrap(), "the river runs over the stone.");

    let loaded = TextTokenizer::load(&out).unwrap();
    assert_eq!(loaded.special, SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 });
    assert_eq!(loaded.vocab_size, size);
}

#[test]
fn training_skips_non_utf8_lines_and_rejects_empty_input() {
    let s = Scratch::new();
    let mut bytes = generated_lines(200, 2).join("\n").into_bytes();
    bytes.extend_from_slice(b"\n\xff\xfe broken \xc3\n");
    let corpus = s.write("corpus.txt", bytes);
    train_wordpiece(&[corpus], 120, 2, true, &s.path("a.json")).unwrap();
    assert!(load_tokenizer(&s.path("a.json")).is_ok());

    let empty = s.write("empty.txt", "\n\n  \n");
    let err = train_wordpiece(&[empty], 120, 2, true, &s.path("b.json")).unwrap_err();
    assert!(err.message.contains("no text"), "{err}");
    assert!(!s.path("b.json").exists());
    let err = train_wordpiece(&[s.path("missing.txt")], 120, 2, true, &s.path("c.json")).unwrap_err();
    assert!(err.message.contains("missing.txt") && err.message.contains("not found"), "{err}");
}

#[test]
fn loading_bad_files_says_what_is_wrong() {
    let s = Scratch::new();
    let err = load_tokenizer(&s.path("nope.json")).unwrap_err();
    assert!(err.message.contains("nope.json") && err.message.contains("not found"), "{err}");
    let junk = s.write("junk.json", "{\"not\": \"a tokenizer\"}");
    let err = load_tokenizer(&junk).unwrap_err();
    assert!(err.message.contains("junk.json") && err.message.contains("not a tokenizer.json"), "{err}");
}

/// transformers loads our tokenizer.json and encodes the same ids; our loader reads a
/// tokenizer.json that Hugging Face's Python library trained.
#[test]
fn tokenizer_files_interchange_with_hugging_face() {
    let s = Scratch::new();
    let corpus = s.write("corpus.txt", generated_lines(400, 3).join("\n"));
    let ours = s.path("ours.json");
    train_wordpiece(std::slice::from_ref(&corpus), 200, 2, true, &ours).unwrap();
    let text = "A bright morning over the green garden.";
    let expected: Vec<u32> = load_tokenizer(&ours).unwrap().encode(text, true).unwrap().get_ids().to_vec();

    let theirs = s.path("theirs.json");
    let script = r#"
import sys, json
from transformers import PreTrainedTokenizerFast
from tokenizers import BertWordPieceTokenizer
ours, text, corpus, theirs = sys.argv[1:5]
print(json.dumps(PreTrainedTokenizerFast(tokenizer_file=ours)(text)["input_ids"]))
t = BertWordPieceTokenizer(lowercase=True)
t.train([corpus], vocab_size=150, min_frequency=2, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
t.save(theirs)
"#;
    let out =
        Command::new(python()).args(["-c", script]).arg(&ours).arg(text).arg(&corpus).arg(&theirs).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hf_ids: Vec<u32> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hf_ids, expected);

    let loaded = TextTokenizer::load(&theirs).unwrap();
    assert_eq!(loaded.special, SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 });
    let ids = loaded.encode_many(vec!["the river"]).unwrap();
    assert_eq!(ids.len(), 1);
    assert!(!ids[0].is_empty());
}
