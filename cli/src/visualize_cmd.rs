//! `pt visualize FROM`: PCA of the encoder's features coloured by class and first-layer filters,
//! for the checkpoint and for the same architecture at random initialisation.

use pt_core::plugin::Registry;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A pt run directory (its latest valid checkpoint) or a checkpoint directory.
    from: PathBuf,
    /// Samples of the run's dataset to project.
    #[arg(long, default_value_t = 2000)]
    samples: u64,
    /// Where the pictures go (default: FROM's run directory, visualize/).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let reg = Registry::discover();
    let (run_dir, ckpt) = pt_core::transfer::locate_or_import(&reg, &args.from)?;
    if let Some(source) = pt_core::transfer::import::imported_from(&run_dir) {
        anyhow::bail!("{source}: pt visualize draws a run's own data, which reference weights lack: use pt embed --data or --task and plot its output");
    }
    let (session, ckpt) = pt_core::transfer::open(&reg, &run_dir, ckpt, Vec::new(), None)?;
    let out = args.out.unwrap_or_else(|| session.run_dir().join("visualize"));
    let files = pt_core::visualize::run(&session, args.samples, &out)?;
    println!("pictures of {} (step {}) and of random initialisation:", ckpt.dir.display(), ckpt.manifest.step);
    for f in &files {
        println!("  {}", f.display());
    }
    match pt_core::visualize::to_tensorboard(&run_dir, ckpt.manifest.step, &files) {
        Ok(true) => {
            let tb = run_dir.join("tb");
            println!("and in TensorBoard's IMAGES tab (run `visualize`): tensorboard --logdir {}", tb.display())
        }
        Ok(false) => {}
        Err(e) => tracing::warn!("{e}"),
    }
    Ok(())
}
