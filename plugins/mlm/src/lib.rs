//! pt's masked-language-model plugin: the `text` and `jsonl` datasets, the `bert` architecture
//! (Hugging Face `BertForMaskedLM`-compatible), the `mlm` objective and the `mlm_eval`
//! evaluator — the pieces of `pt train --objective mlm --arch bert` — and the `electra` objective
//! (a generator and a discriminator `bert` trained together).

pub mod bert;
pub mod cache;
pub mod collate;
pub mod corpus;
pub mod electra;
pub mod evaluator;
pub mod jsonl_dataset;
pub mod masking;
pub mod objective;
pub mod paths;
pub mod records;
pub mod text_dataset;
pub mod text_tokenizer;

pub use bert::Bert;
pub use electra::Electra;
pub use evaluator::MlmEval;
pub use jsonl_dataset::JsonlDataset;
pub use objective::Mlm;
pub use text_dataset::TextDataset;

pt_sdk::export_plugin! {
    name: "mlm",
    datasets: [TextDataset, JsonlDataset],
    architectures: [Bert],
    objectives: [Mlm, Electra],
    evaluators: [MlmEval],
}
