//! Recipes built into the binary: every file of `recipes/` (a test checks that none is missing),
//! by file stem. `pt train --objective mlm --arch bert` with nothing else uses `mlm-bert`;
//! `pt train --recipe NAME` any of them. Each file starts with the command that runs it.

pub const BUILT_IN: &[(&str, &str)] = &[
    ("mlm-bert", include_str!("../../recipes/mlm-bert.toml")),
    ("mlm-bert-small-gpu", include_str!("../../recipes/mlm-bert-small-gpu.toml")),
    ("electra-bert", include_str!("../../recipes/electra-bert.toml")),
    ("supervised-resnet18", include_str!("../../recipes/supervised-resnet18.toml")),
    ("supervised-resnet18-fashion", include_str!("../../recipes/supervised-resnet18-fashion.toml")),
    ("simclr-resnet18", include_str!("../../recipes/simclr-resnet18.toml")),
    ("simclr-resnet18-gpu", include_str!("../../recipes/simclr-resnet18-gpu.toml")),
    ("semi-supervised-resnet18", include_str!("../../recipes/semi-supervised-resnet18.toml")),
    ("semi-supervised-fixmatch-resnet18", include_str!("../../recipes/semi-supervised-fixmatch-resnet18.toml")),
    ("simclr-emoji", include_str!("../../recipes/simclr-emoji.toml")),
    ("clip-emoji", include_str!("../../recipes/clip-emoji.toml")),
    ("clip-emoji-multilingual", include_str!("../../recipes/clip-emoji-multilingual.toml")),
    ("wav2vec2-wav2vec2", include_str!("../../recipes/wav2vec2-wav2vec2.toml")),
];

pub fn find(name: &str) -> Option<&'static str> {
    BUILT_IN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

pub fn names() -> Vec<&'static str> {
    BUILT_IN.iter().map(|(n, _)| *n).collect()
}

/// A recipe's heading: its first comment line after the command line, else the command.
fn heading(text: &str) -> String {
    let comments: Vec<&str> =
        text.lines().take_while(|l| l.starts_with('#')).map(|l| l.trim_start_matches('#').trim()).collect();
    comments.get(1).or(comments.first()).map(|s| s.to_string()).unwrap_or_default()
}

#[derive(clap::Args)]
pub struct Args {
    /// Print this recipe.
    #[arg(long)]
    show: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.show {
        Some(name) => {
            let text = find(&name)
                .ok_or_else(|| anyhow::anyhow!("no built-in recipe '{name}' (have: {})", names().join(", ")))?;
            print!("{text}");
        }
        None => {
            for (name, text) in BUILT_IN {
                let command = text.lines().next().unwrap_or("").trim_start_matches('#').trim();
                println!("{name:<34} {}\n{:<34} ({command})", heading(text), "");
            }
        }
    }
    Ok(())
}
