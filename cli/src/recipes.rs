//! Recipes built into the binary: `pt train --objective mlm --arch bert` with nothing else uses
//! the one named `mlm-bert`. Each file in `recipes/` starts with the command that runs it.

pub const BUILT_IN: &[(&str, &str)] = &[
    ("mlm-bert", include_str!("../../recipes/mlm-bert.toml")),
    ("supervised-resnet18", include_str!("../../recipes/supervised-resnet18.toml")),
    ("simclr-resnet18", include_str!("../../recipes/simclr-resnet18.toml")),
    ("wav2vec2-wav2vec2", include_str!("../../recipes/wav2vec2-wav2vec2.toml")),
];

pub fn find(name: &str) -> Option<&'static str> {
    BUILT_IN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
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
            let text = find(&name).ok_or_else(|| {
                anyhow::anyhow!(
                    "no built-in recipe '{name}' (have: {})",
                    BUILT_IN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                )
            })?;
            print!("{text}");
        }
        None => {
            for (name, text) in BUILT_IN {
                let first = text.lines().next().unwrap_or("").trim_start_matches('#').trim();
                println!("{name:<16} {first}");
            }
        }
    }
    Ok(())
}
