//! `pt data pack SRC OUT`: an image folder (class folders or unlabelled) or an audio folder into
//! WebDataset-style tar shards (`NNNNNNNN.png|jpg|flac|wav|…` with the original bytes, and
//! `NNNNNNNN.cls` holding the class number), which `image_shards` and `audio`'s `shards` read.

use anyhow::Context;
use pt_kit::shards::TarWriter;
use pt_kit::vision::folder::{list_images, FolderLabels};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Pack an image or audio folder into tar shards (for `image_shards`, or `audio` with `shards`).
    Pack {
        /// Root of the images (one sub-folder per class, or unlabelled at any depth) or of the
        /// audio files (unlabelled unless --labels folders).
        src: PathBuf,
        /// Folder the shards are written into (created; must be empty or absent).
        out: PathBuf,
        /// Samples per shard.
        #[arg(long, default_value_t = 1000)]
        shard_size: usize,
        /// folders, none or auto (as `image_folder`'s `labels`).
        #[arg(long, default_value = "auto")]
        labels: String,
    },
    /// What pt sees: for a folder, file or pattern, its images (sizes, classes), audio (durations,
    /// rates), text (lines) and shards (samples), unreadable files named, and the [data] section
    /// that reads it; for a recipe, its dataset built as `pt train` builds it.
    Inspect {
        /// A folder, file or pattern of data; or a recipe (a .toml file or a built-in name).
        target: String,
        /// With a recipe: override keys, as for `pt train` (`--set data.max_samples=100`).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// With a recipe: read every sample once and name those that fail.
        #[arg(long)]
        read_all: bool,
    },
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Pack { src, out, shard_size, labels } => pack(&src, &out, shard_size, &labels),
        DataCommand::Inspect { target, set, read_all } => {
            crate::out::quiet_on_closed_pipe();
            let is_recipe = target.ends_with(".toml") || crate::recipes::find(&target).is_some();
            if is_recipe && !std::path::Path::new(&target).is_dir() {
                crate::data_inspect_recipe::inspect_recipe(&target, &set, read_all)
            } else if !set.is_empty() || read_all {
                anyhow::bail!("--set and --read-all apply to a recipe; {target} is data (inspect reads all its files)")
            } else {
                crate::data_inspect::inspect_path(std::path::Path::new(&target))
            }
        }
    }
}

/// The audio files under `root` in path order, labelled by their class folder (the root's
/// sub-folder) with `--labels folders`; unlabelled otherwise (audio trees are usually by speaker).
fn list_audio(root: &std::path::Path, labels: FolderLabels) -> anyhow::Result<(Vec<(PathBuf, i64)>, Vec<String>)> {
    let files = pt_kit::audio::scan_wavs(root)?;
    if labels != FolderLabels::Folders {
        return Ok((files.into_iter().map(|f| (f, -1)).collect(), Vec::new()));
    }
    let class_of = |f: &std::path::Path| -> anyhow::Result<String> {
        let mut parts = f.strip_prefix(root)?.components();
        match (parts.next(), parts.next()) {
            (Some(c), Some(_)) => Ok(c.as_os_str().to_string_lossy().into_owned()),
            _ => anyhow::bail!("{}: not inside a class folder of {} (--labels folders)", f.display(), root.display()),
        }
    };
    let named = files.into_iter().map(|f| Ok((class_of(&f)?, f))).collect::<anyhow::Result<Vec<_>>>()?;
    let mut classes: Vec<String> = named.iter().map(|(c, _)| c.clone()).collect();
    classes.sort();
    classes.dedup();
    let labelled = named.into_iter().map(|(c, f)| (f, classes.binary_search(&c).unwrap_or(0) as i64)).collect();
    Ok((labelled, classes))
}

fn pack(src: &std::path::Path, out: &std::path::Path, shard_size: usize, labels: &str) -> anyhow::Result<()> {
    let labels = match labels {
        "auto" => FolderLabels::Auto,
        "folders" => FolderLabels::Folders,
        "none" => FolderLabels::None,
        other => anyhow::bail!("--labels {other}: expected auto, folders or none"),
    };
    if shard_size == 0 {
        anyhow::bail!("--shard-size must be at least 1");
    }
    if out.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        anyhow::bail!("{} is not empty: pack into a new folder", out.display());
    }
    let has_images = !list_images(src, FolderLabels::None)?.0.is_empty();
    let (kind, (files, classes)) =
        if has_images { ("images", list_images(src, labels)?) } else { ("audio clips", list_audio(src, labels)?) };
    if files.is_empty() {
        anyhow::bail!(
            "{}: no images (.png/.jpg/.jpeg/.svg) or audio (.wav/.flac/.ogg/.opus/.mp3) found at any depth; nothing to pack",
            src.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started = std::time::Instant::now();
    let mut written = 0;
    for (s, chunk) in files.chunks(shard_size).enumerate() {
        let path = out.join(format!("shard-{s:06}.tar"));
        let tmp = out.join(format!(".shard-{s:06}.tar.tmp"));
        let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut tar = TarWriter::new(std::io::BufWriter::new(file));
        for (i, (image, label)) in chunk.iter().enumerate() {
            let key = format!("{:08}", s * shard_size + i);
            let ext = image.extension().and_then(|e| e.to_str()).unwrap_or("png").to_ascii_lowercase();
            let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
            tar.add(&format!("{key}.{ext}"), &bytes).with_context(|| format!("writing {}", tmp.display()))?;
            if *label >= 0 {
                tar.add(&format!("{key}.cls"), label.to_string().as_bytes())?;
            }
        }
        tar.finish()?.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        written += chunk.len();
        errln!("{}: {} {kind} ({written} of {})", path.display(), chunk.len(), files.len());
    }
    if !classes.is_empty() {
        std::fs::write(out.join("classes.txt"), classes.join("\n") + "\n")?;
    }
    outln!(
        "packed {} {kind}{} into {} shard(s) in {} in {:.1}s",
        files.len(),
        if classes.is_empty() { String::new() } else { format!(" of {} classes", classes.len()) },
        files.len().div_ceil(shard_size),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
