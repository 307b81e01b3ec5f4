//! `pt tokenizer train`: a WordPiece tokenizer (BERT-style, `[PAD] [UNK] [CLS] [SEP] [MASK]`).

use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum TokenizerCommand {
    /// Train on text files (one paragraph per line) and write tokenizer.json. The same corpus and
    /// settings always give the same file.
    Train {
        /// Text files, directories or patterns (`corpus/**/*.txt`) to learn the vocabulary from.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The files are JSON lines and this field holds the text (Parquet files: the column).
        #[arg(long)]
        text_field: Option<String>,
        #[arg(long, default_value_t = 8000)]
        vocab_size: usize,
        #[arg(long, default_value_t = 2)]
        min_frequency: u64,
        /// Keep case (default: lowercase and strip accents, like bert-base-uncased).
        #[arg(long)]
        cased: bool,
        #[arg(short, long, default_value = "tokenizer.json")]
        output: PathBuf,
    },
}

pub fn run(cmd: TokenizerCommand) -> anyhow::Result<()> {
    match cmd {
        TokenizerCommand::Train { files, text_field, vocab_size, min_frequency, cased, output } => {
            let started = std::time::Instant::now();
            let extensions: &[&str] =
                if text_field.is_some() { &["jsonl", "json", "parquet", "tar"] } else { &["txt", "text", "tar"] };
            let files = pt_kit::files::expand_sources(&files, extensions, "pt tokenizer train")?;
            let field = text_field.as_deref();
            pt_kit::text::train_wordpiece_on(&files, field, vocab_size, min_frequency, !cased, &output)?;
            let tok = pt_kit::text::load_tokenizer(&output)?;
            println!(
                "wrote {} ({} tokens) in {:.1}s",
                output.display(),
                tok.get_vocab_size(true),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
