//! `pt-engine`: the real `pt` command (started by the `pt` launcher once libtorch is checked).

#[macro_use]
mod out;
mod checkpoint_cmd;
mod data_cmd;
mod data_inspect;
mod data_inspect_recipe;
mod doctor;
mod embed_cmd;
mod export_cmd;
mod export_format;
mod launch_cmd;
mod logging;
mod plugin_cmd;
mod plugin_new;
mod progress;
mod recipes;
mod tokenizer_cmd;
mod train_cmd;
mod transfer_cmd;
mod visualize_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "pt", version, about = "Pretrain neural networks from plugins, on libtorch.")]
struct Cli {
    /// More output: -v shows info and error details, -vv debug.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Versions, CUDA, threads, plugin search path and the plugins found.
    Doctor(doctor::Args),
    /// Install, list, describe and remove plugins.
    #[command(subcommand)]
    Plugin(plugin_cmd::PluginCommand),
    /// Train: `pt train --objective mlm --arch bert`, or a recipe with overrides.
    Train(train_cmd::Args),
    /// Run a pt command as N ranks of one data-parallel job: `pt launch --nproc-per-node 2 -- train …`.
    Launch(launch_cmd::Args),
    /// List and inspect checkpoints.
    #[command(subcommand)]
    Checkpoint(checkpoint_cmd::CheckpointCommand),
    /// Your own data: `pt data inspect PATH|RECIPE` shows what pt sees; `pt data pack IMAGES OUT`
    /// writes tar shards for `image_shards`.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Show the built-in recipes (`pt recipes --show NAME` prints one).
    Recipes(recipes::Args),
    /// Train a WordPiece tokenizer on text files.
    #[command(subcommand)]
    Tokenizer(tokenizer_cmd::TokenizerCommand),
    /// Export a checkpoint's model as a Hugging Face directory (config.json, model.safetensors, tokenizer).
    Export(export_cmd::Args),
    /// A checkpoint's feature vectors for a dataset, at any layer: `pt embed RUN -o feats.safetensors`.
    Embed(embed_cmd::Args),
    /// Does pretraining help? A checkpoint against random init on a downstream task, with curves.
    Transfer(transfer_cmd::Args),
    /// Pictures of what an encoder learned: PCA of features by class, first-layer filters.
    Visualize(visualize_cmd::Args),
}

fn main() {
    let cli = Cli::parse();
    // Training, launching and transfer runs keep going when their output pipe closes.
    if !matches!(cli.command, Command::Train(_) | Command::Launch(_) | Command::Transfer(_)) {
        out::quiet_on_closed_pipe();
    }
    logging::init_stderr(cli.verbose);
    pt_core::runtime::init();
    let result = match cli.command {
        Command::Doctor(a) => doctor::run(a),
        Command::Plugin(c) => plugin_cmd::run(c),
        Command::Train(a) => train_cmd::run(a, cli.verbose),
        Command::Launch(a) => launch_cmd::run(a),
        Command::Checkpoint(c) => checkpoint_cmd::run(c),
        Command::Data(c) => data_cmd::run(c),
        Command::Recipes(a) => recipes::run(a),
        Command::Tokenizer(c) => tokenizer_cmd::run(c),
        Command::Export(a) => export_cmd::run(a),
        Command::Embed(a) => embed_cmd::run(a),
        Command::Transfer(a) => transfer_cmd::run(a),
        Command::Visualize(a) => visualize_cmd::run(a),
    };
    if let Err(e) = result {
        errln!("pt: error: {e:#}");
        if let Some(detail) = e.downcast_ref::<pt_core::Error>().and_then(|e| e.detail()) {
            if cli.verbose > 0 {
                errln!("detail:\n{detail}");
            } else {
                errln!("(run with -v for details)");
            }
        }
        std::process::exit(1);
    }
}
