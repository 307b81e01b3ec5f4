//! `pt train`: resolve the recipe, build the components, train, report.

use crate::progress::Progress;
use anyhow::Context;
use pt_core::config::Recipe;
use pt_core::dist::{Backend, DistEnv, Group};
use pt_core::plan::{RunPlan, World};
use pt_core::plugin::Registry;
use pt_core::train::run_lock::RunLock;
use pt_core::train::trainer::TrainOptions;
use pt_core::train::{Session, Trainer};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// A TOML recipe file, or a built-in recipe by name (`pt recipes` lists them); without one,
    /// the built-in recipe OBJECTIVE-ARCH is used if there is one.
    #[arg(long)]
    recipe: Option<String>,
    /// Objective (`name` or `plugin:name`).
    #[arg(long)]
    objective: Option<String>,
    /// Architecture (`name` or `plugin:name`).
    #[arg(long)]
    arch: Option<String>,
    /// Training dataset (`name` or `plugin:name`).
    #[arg(long)]
    data: Option<String>,
    /// Override any recipe key: --set optim.lr=3e-4 --set run.batch_size=64; --set ~KEY removes
    /// a key (its default applies), --set ~eval.1 the second [[eval]] (later ones move up).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Resume even though the config differs from the checkpoint's in keys that change what is
    /// trained (learning rate, batch, data, seed, ...); the changes and the step are recorded in
    /// RUN_DIR/config-changes.jsonl.
    #[arg(long)]
    accept_changes: bool,
    /// Start the run over from step 0 even though RUN_DIR has checkpoints (they and the metrics
    /// so far are moved aside, not deleted).
    #[arg(long, conflicts_with = "resume")]
    restart: bool,
    /// Print the resolved run plan as TOML (every default filled in, plugin configs included)
    /// and exit without building or training anything.
    #[arg(long)]
    print_config: bool,
    /// Where the run lives (default runs/OBJECTIVE-ARCH). An existing run there is resumed.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Resume RUN_DIR from its latest valid checkpoint, with its saved config.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["recipe", "run_dir"])]
    resume: Option<PathBuf>,
    /// Start from these weights (pt run or checkpoint, HF model dir or .safetensors); reports missing/unexpected keys.
    /// ROLE=PATH loads into one architecture of a multi-architecture run; repeat for each role.
    /// Shorthand for --set run.init_from=[...], so the run's config records it.
    #[arg(long, value_name = "[ROLE=]PATH")]
    init_from: Vec<String>,
    /// Shorthand for --set run.max_steps=N.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Shorthand for --set run.device=DEVICE (auto, cpu, cuda, cuda:N).
    #[arg(long)]
    device: Option<String>,
    /// Shorthand for --set run.seed=N.
    #[arg(long)]
    seed: Option<u64>,
    /// No progress bar or per-step lines.
    #[arg(long)]
    quiet: bool,
}

/// The trainer's stop flag, set by SIGINT/SIGTERM/SIGHUP (the handler only does atomic
/// operations and, on a second signal, `write` and `_exit`).
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// What a second signal prints before exiting, made before the handlers are installed.
static SECOND_SIGNAL_MESSAGE: OnceLock<Vec<u8>> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    let Some(stop) = STOP.get() else { return };
    if stop.swap(true, Ordering::SeqCst) {
        // Second signal: the user really wants out. No checkpoint is claimed: one being written
        // now is discarded by the next start, which resumes from the last complete one.
        if let Some(m) = SECOND_SIGNAL_MESSAGE.get() {
            unsafe { libc::write(2, m.as_ptr().cast(), m.len()) };
        }
        unsafe { libc::_exit(130) };
    }
}

/// Ctrl-C, `kill` (SIGTERM) and a closed terminal or ssh session (SIGHUP) all finish the step,
/// save and stop; a second one exits at once.
fn install_signal_handlers(run_dir: &std::path::Path) -> Arc<AtomicBool> {
    let _ = SECOND_SIGNAL_MESSAGE.set(
        format!(
            "\npt: stopped at once by a second signal, without a final checkpoint; `pt train --resume {}` continues from the last complete one\n",
            run_dir.display()
        )
        .into_bytes(),
    );
    let stop = STOP.get_or_init(|| Arc::new(AtomicBool::new(false))).clone();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing a handler that only does atomic operations (and write/_exit). A
        // signal the parent set to be ignored stays ignored (`nohup pt train …` keeps running
        // when the terminal closes; a background job of a script ignores Ctrl-C).
        unsafe {
            if libc::signal(sig, on_signal as *const () as libc::sighandler_t) == libc::SIG_IGN {
                libc::signal(sig, libc::SIG_IGN);
            }
        }
    }
    stop
}

/// The recipe text named by `--recipe` (a file, else a built-in name) or implied by
/// `--objective`/`--arch` (their built-in recipe, else an empty one), and where it came from.
fn recipe_text(args: &Args) -> anyhow::Result<(String, String)> {
    if let Some(r) = &args.recipe {
        let path = std::path::Path::new(r);
        if path.is_file() {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading recipe {r}"))?;
            return Ok((text, r.clone()));
        }
        return match crate::recipes::find(r) {
            Some(text) => Ok((text.to_string(), format!("built-in recipe {r}"))),
            None => anyhow::bail!(
                "--recipe {r}: no such file, and no built-in recipe of that name (built-in: {})",
                crate::recipes::names().join(", ")
            ),
        };
    }
    let (Some(o), Some(a)) = (&args.objective, &args.arch) else {
        anyhow::bail!("give --recipe FILE|NAME, or --objective and --arch (e.g. pt train --objective mlm --arch bert)");
    };
    let key = format!("{}-{}", o.rsplit(':').next().unwrap_or(o), a.rsplit(':').next().unwrap_or(a));
    Ok(match crate::recipes::find(&key) {
        Some(t) => (t.to_string(), format!("built-in recipe {key}")),
        None => (String::new(), "command line".to_string()),
    })
}

fn build_recipe(args: &Args) -> anyhow::Result<(Recipe, PathBuf)> {
    let mut overrides: Vec<String> = Vec::new();
    for (key, v) in [("objective.name", &args.objective), ("arch.name", &args.arch), ("data.name", &args.data)] {
        if let Some(v) = v {
            overrides.push(format!("{key}=\"{v}\""));
        }
    }
    if let Some(n) = args.max_steps {
        overrides.push(format!("run.max_steps={n}"));
    }
    if let Some(d) = &args.device {
        overrides.push(format!("run.device=\"{d}\""));
    }
    if let Some(s) = args.seed {
        overrides.push(format!("run.seed={s}"));
    }
    if !args.init_from.is_empty() {
        let sources = toml::Value::Array(args.init_from.iter().cloned().map(toml::Value::String).collect());
        overrides.push(format!("run.init_from={sources}"));
    }
    overrides.extend(args.set.iter().cloned());

    if let Some(run_dir) = &args.resume {
        let path = run_dir.join("config.toml");
        if !path.exists() {
            anyhow::bail!("{} has no config.toml: is it a pt run directory?", run_dir.display());
        }
        return Ok((Recipe::load_saved(&path, &overrides)?, run_dir.clone()));
    }
    let (text, origin) = recipe_text(args)?;
    // `--objective electra --arch bert` picked the built-in recipe whose architectures are
    // under roles, all of them `--arch`: naming it again would replace the roles.
    let roles = |t: &str| Recipe::parse(t, &origin, &[]).map(|r| matches!(r.arch, pt_core::config::Archs::Roles(_)));
    if args.recipe.is_none() && !text.is_empty() && roles(&text)? {
        overrides.retain(|o| !o.starts_with("arch.name="));
    }
    let recipe = Recipe::parse(&text, &origin, &overrides)?;
    let run_dir = args.run_dir.clone().unwrap_or_else(|| PathBuf::from("runs").join(default_run_name(&recipe)));
    Ok((recipe, run_dir))
}

/// `OBJECTIVE-ARCH` (`mix-ARCH` for a mix; roles' architectures joined with `+`).
fn default_run_name(recipe: &Recipe) -> String {
    let short = |s: &str| s.rsplit(':').next().unwrap_or(s).to_string();
    let objective = if recipe.mix.is_empty() { short(&recipe.objective.name) } else { "mix".to_string() };
    let archs: Vec<String> = recipe.arch.iter().into_iter().map(|(_, s)| short(&s.name)).collect();
    format!("{objective}-{}", archs.join("+"))
}

pub fn run(args: Args, verbose: u8) -> anyhow::Result<()> {
    let (recipe, run_dir) = build_recipe(&args)?;
    // Under torchrun or `pt launch` this process is one rank of several.
    let dist_env = DistEnv::from_env()?;
    let world = dist_env.as_ref().map_or(World::default(), |e| World { rank: e.rank, world_size: e.world_size });
    let reg = Registry::discover();
    // Everything is resolved and checked here, before anything is created or built.
    let plan = RunPlan::resolve(&reg, recipe, &run_dir, world)?;
    if args.print_config {
        crate::out::quiet_on_closed_pipe(); // only printing from here on
        print!("{}", plan.to_toml(None));
        return Ok(());
    }
    let rank = world.rank;
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating run directory {}", run_dir.display()))?;
    // One process writes a run directory (rank 0 for all ranks of a launched run), before its
    // log or anything else is touched.
    let _lock = if rank == 0 { Some(RunLock::acquire(&run_dir)?) } else { None };
    let log_name = if rank == 0 { "train.log".to_string() } else { format!("train.rank{rank}.log") };
    crate::logging::log_to_file(&run_dir.join(log_name))?;
    let stop = install_signal_handlers(&run_dir);
    let dist = match &dist_env {
        Some(env) => {
            let backend = Backend::choose(plan.recipe.run.dist_backend, plan.device)?;
            let timeout = Duration::from_secs(plan.recipe.run.dist_timeout_s);
            let group = Arc::new(Group::connect(env, timeout, backend)?);
            group.start_heartbeat();
            pt_core::dist::set_current(group.clone());
            Some(group)
        }
        None => None,
    };
    // However this function returns, the group's communicators end before the process does.
    struct ShutdownAtEnd(Option<Arc<Group>>);
    impl Drop for ShutdownAtEnd {
        fn drop(&mut self) {
            if let Some(g) = &self.0 {
                g.shutdown();
            }
        }
    }
    let _shutdown = ShutdownAtEnd(dist.clone());
    let summary = {
        let session = Session::build(plan)?;
        let opts =
            TrainOptions { resume: true, stop, dist, accept_changes: args.accept_changes, restart: args.restart };
        let mut trainer = Trainer::new(&reg, session, opts)?;
        if let Some(r) = &trainer.init_report {
            errln!(
                "init-from: loaded {} tensors; missing {} {:?}; unexpected {} {:?}",
                r.loaded,
                r.missing.len(),
                r.missing.iter().take(5).collect::<Vec<_>>(),
                r.unexpected.len(),
                r.unexpected.iter().take(5).collect::<Vec<_>>()
            );
        }
        if rank == 0 {
            trainer.run(&mut Progress::new(!args.quiet))?
        } else {
            trainer.run(&mut pt_core::train::NullObserver)? // rank 0 reports for all
        }
    };
    if rank != 0 {
        return Ok(()); // rank 0 reports and writes the summary
    }
    // Built-in components share the host's counter; every loaded .so has its own.
    let leaked = pt_sdk::live_handles()
        + reg
            .plugins
            .iter()
            .filter(|f| f.from != pt_core::plugin::SearchDirKind::Builtin)
            .map(|f| (f.plugin.module.live_handles())())
            .sum::<i64>();
    let summary = pt_core::train::RunSummary { leaked_tensor_handles: leaked, ..summary };
    let text = serde_json::to_string_pretty(&summary)?;
    std::fs::write(run_dir.join("summary.json"), &text)
        .with_context(|| format!("writing {}", run_dir.join("summary.json").display()))?;
    if leaked != 0 {
        tracing::warn!(leaked, "tensor handles still alive after the run");
    }
    outln!("run: {}", run_dir.display());
    outln!(
        "stopped: {:?} at step {} after {:.1}s; last loss {}",
        summary.stop,
        summary.step,
        summary.seconds,
        summary.last_loss.map(|l| format!("{l:.4}")).unwrap_or("-".into())
    );
    for (name, r) in &summary.evals {
        outln!("eval {name}: {}", crate::progress::eval_parts(r).join("  "));
    }
    if let Some(c) = &summary.checkpoint {
        outln!("checkpoint: {}", c.display());
    }
    if verbose > 0 {
        outln!("tensor handles alive: {leaked}");
    }
    Ok(())
}
