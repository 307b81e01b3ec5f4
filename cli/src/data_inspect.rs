//! `pt data inspect PATH|RECIPE`: what pt sees before a run starts. For a path (a folder, a file
//! or a pattern): the files by kind — images with their sizes and classes, audio with durations
//! and rates, text with lines, tar shards with their samples — every unreadable file named, and
//! the `[data]` section that reads it. For a recipe: its dataset built exactly as `pt train`
//! builds it (samples, fields, classes, notes, lengths), and with `--read-all` every sample read.

use pt_kit::audio::read_wav_header;
use pt_kit::shards::index_samples;
use pt_kit::vision::decode::header_dimensions;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const IMAGE: &[&str] = &pt_kit::vision::decode::IMAGE_EXTENSIONS;
const AUDIO: &[&str] = &["wav", "flac", "ogg", "opus", "mp3"];
const TEXT: &[&str] = &["txt", "text", "md"];
const JSON_LINES: &[&str] = &["jsonl", "json"];

/// Files that could not be read, each with why (the first few are printed).
#[derive(Default)]
struct Unreadable(Vec<(PathBuf, String)>);

impl Unreadable {
    fn print(&self) {
        if self.0.is_empty() {
            return;
        }
        outln!("  unreadable: {} file(s)", self.0.len());
        for (path, why) in self.0.iter().take(10) {
            outln!("    {}: {why}", path.display());
        }
        if self.0.len() > 10 {
            outln!("    … and {} more", self.0.len() - 10);
        }
    }
}

pub fn inspect_path(target: &Path) -> anyhow::Result<()> {
    let shown = target.to_string_lossy();
    if !shown.contains(['*', '?']) && !target.exists() {
        anyhow::bail!("{shown}: no such file or folder (give a folder, file or pattern of data, or a recipe)");
    }
    let files = pt_kit::files::expand_sources(&[target.to_path_buf()], &[], "inspect")?;
    let mut by_kind: BTreeMap<&str, Vec<PathBuf>> = BTreeMap::new();
    let mut other: BTreeMap<String, usize> = BTreeMap::new();
    for f in files {
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let kind = match ext.as_str() {
            e if IMAGE.contains(&e) => "images",
            e if AUDIO.contains(&e) => "audio",
            e if TEXT.contains(&e) => "text",
            e if JSON_LINES.contains(&e) => "json lines",
            "tar" => "shards",
            "parquet" => "parquet",
            _ => {
                *other.entry(if ext.is_empty() { "(none)".into() } else { ext }).or_default() += 1;
                continue;
            }
        };
        by_kind.entry(kind).or_default().push(f);
    }
    let total: usize = by_kind.values().map(Vec::len).sum::<usize>() + other.values().sum::<usize>();
    outln!("{}: {total} file(s)", target.display());
    let mut suggestions = Vec::new();
    for (kind, files) in &by_kind {
        let suggestion = match *kind {
            "images" => images(target, files),
            "audio" => audio(files),
            "text" | "json lines" => text(kind, files),
            "parquet" => parquet(files),
            _ => shards(files),
        };
        suggestions.push(suggestion(target));
    }
    if !other.is_empty() {
        let list: Vec<String> = other.iter().map(|(e, n)| format!(".{e} {n}")).collect();
        outln!("  not read by pt's datasets: {}", list.join(", "));
    }
    match suggestions.as_slice() {
        [] => anyhow::bail!("{}: no images, audio, text or tar shards found", target.display()),
        [one] => outln!("\nread it with:\n{one}"),
        many => outln!("\nmixed kinds; read each part with one of:\n{}", many.join("\n\n")),
    }
    Ok(())
}

type Suggest = Box<dyn Fn(&Path) -> String>;

fn images(root: &Path, files: &[PathBuf]) -> Suggest {
    let dims: Vec<_> = files.par_iter().map(|f| header_dimensions(f)).collect();
    let mut bad = Unreadable::default();
    let mut shorter = Vec::new();
    let mut largest: Option<(u64, u32, u32, &Path)> = None;
    for (f, d) in files.iter().zip(dims) {
        match d {
            Ok((w, h)) => {
                shorter.push(w.min(h) as f64);
                let px = w as u64 * h as u64;
                if largest.is_none_or(|l| px > l.0) {
                    largest = Some((px, w, h, f));
                }
            }
            Err(why) => bad.0.push((f.clone(), why)),
        }
    }
    outln!("  images: {} ({})", files.len(), extension_counts(files));
    outln!("    shorter side (px): {}", histogram(&shorter, &[64.0, 128.0, 256.0, 512.0, 1024.0]));
    if let Some((px, w, h, f)) = largest {
        outln!("    largest: {w}×{h} ({:.1} M pixels) {}", px as f64 / 1e6, f.display());
    }
    let classes = class_folders(root, files);
    if classes.is_empty() {
        outln!("    no class folders: read as unlabelled images");
    } else {
        let list: Vec<String> = classes.iter().take(20).map(|(c, n)| format!("{c} {n}")).collect();
        let more = if classes.len() > 20 { format!(", … ({} classes)", classes.len()) } else { String::new() };
        outln!("    {} class folder(s): {}{more}", classes.len(), list.join(", "));
        outln!("    (if these folders are not classes, add labels = \"none\")");
    }
    bad.print();
    Box::new(|p| {
        format!("  [data]\n  name = \"image_folder\"\n  path = \"{}\"\n  image_size = 224", folder(p).display())
    })
}

/// Images per top-level sub-folder of `root`, when every image lies in one (ImageFolder layout).
fn class_folders(root: &Path, files: &[PathBuf]) -> BTreeMap<String, usize> {
    let mut classes = BTreeMap::new();
    for f in files {
        let Ok(rel) = f.strip_prefix(root) else { return BTreeMap::new() };
        let mut parts = rel.components();
        match (parts.next(), parts.next()) {
            (Some(class), Some(_)) => {
                *classes.entry(class.as_os_str().to_string_lossy().into_owned()).or_default() += 1
            }
            _ => return BTreeMap::new(), // an image at the root: not class folders
        }
    }
    classes
}

fn audio(files: &[PathBuf]) -> Suggest {
    let facts: Vec<_> = files.par_iter().map(|f| read_wav_header(f)).collect();
    let mut bad = Unreadable::default();
    let (mut seconds, mut rates) = (Vec::new(), BTreeMap::<String, usize>::new());
    for (f, r) in files.iter().zip(facts) {
        match r {
            Ok(facts) => {
                seconds.push(facts.seconds());
                *rates.entry(format!("{} Hz × {} ch", facts.sample_rate, facts.channels)).or_default() += 1;
            }
            Err(e) => bad.0.push((f.clone(), e.message.to_string())),
        }
    }
    let hours = seconds.iter().sum::<f64>() / 3600.0;
    outln!("  audio: {} ({}), {hours:.2} h", files.len(), extension_counts(files));
    outln!("    seconds: {}", histogram(&seconds, &[1.0, 2.0, 5.0, 10.0, 20.0, 30.0]));
    let list: Vec<String> = rates.iter().map(|(r, n)| format!("{r}: {n}")).collect();
    outln!("    formats: {}", list.join(", "));
    bad.print();
    Box::new(|p| format!("  [data]\n  name = \"audio\"\n  path = \"{}\"\n  sample_rate = 16000", folder(p).display()))
}

fn text(kind: &str, files: &[PathBuf]) -> Suggest {
    let (mut lines, mut bytes, mut not_utf8) = (0usize, 0u64, 0usize);
    let mut bad = Unreadable::default();
    let mut json_keys: Option<Vec<String>> = None;
    for f in files {
        let data = match std::fs::read(f) {
            Ok(d) => d,
            Err(e) => {
                bad.0.push((f.clone(), e.to_string()));
                continue;
            }
        };
        bytes += data.len() as u64;
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            lines += 1;
            match std::str::from_utf8(line) {
                Err(_) => not_utf8 += 1,
                Ok(s) if json_keys.is_none() && s.trim_start().starts_with('{') => {
                    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str(s) {
                        json_keys = Some(m.keys().cloned().collect());
                    }
                }
                Ok(_) => {}
            }
        }
    }
    outln!(
        "  {kind}: {} ({}), {lines} non-empty lines, {:.1} MB",
        files.len(),
        extension_counts(files),
        bytes as f64 / 1e6
    );
    if not_utf8 > 0 {
        outln!("    {not_utf8} line(s) are not UTF-8 (pt skips and counts them)");
    }
    let keys = json_keys.clone().unwrap_or_default();
    let has = |key: &str| keys.iter().any(|k| k == key);
    if has("image") && (has("caption") || has("captions")) {
        // Captioned images (what `image_text` reads, one file per dataset): a path per line,
        // relative to the file.
        outln!("    JSON lines with keys: {}", keys.join(", "));
        outln!("    captioned images: `image` is a path relative to the file, `caption(s)` its text");
        let other: Vec<String> = keys
            .iter()
            .filter(|k| k.starts_with("caption") && !["caption", "captions"].contains(&k.as_str()))
            .map(|k| format!("\"{k}\""))
            .collect();
        if !other.is_empty() {
            outln!(
                "    more captions in {} (caption_fields = [\"captions\", {}] reads them too)",
                other.join(", "),
                other.join(", ")
            );
        }
        if files.len() > 1 {
            outln!("    {} files: one image_text dataset reads one (here the first)", files.len());
        }
        bad.print();
        let file = files[0].clone();
        return Box::new(move |_| format!("  [data]\n  name = \"image_text\"\n  path = \"{}\"", file.display()));
    }
    let field = json_keys.as_ref().map(|keys| {
        outln!("    JSON lines with keys: {}", keys.join(", "));
        let pick = keys.iter().find(|k| *k == "text").or(keys.first()).cloned().unwrap_or_default();
        format!("\n  text_field = \"{pick}\"")
    });
    bad.print();
    let field = field.unwrap_or_default();
    Box::new(move |p| format!("  [data]\n  name = \"text\"\n  files = [\"{}\"]{field}", p.display()))
}

fn parquet(files: &[PathBuf]) -> Suggest {
    let mut bad = Unreadable::default();
    let (mut rows, mut strings) = (0u64, BTreeMap::<String, usize>::new());
    for f in files {
        match pt_kit::text::parquet_columns(f) {
            Ok((n, columns)) => {
                rows += n;
                for (name, _) in columns.into_iter().filter(|(_, is_string)| *is_string) {
                    *strings.entry(name).or_default() += 1;
                }
            }
            Err(e) => bad.0.push((f.clone(), e.message.to_string())),
        }
    }
    outln!("  parquet: {} file(s), {rows} rows", files.len());
    let list: Vec<String> = strings.iter().map(|(c, n)| format!("{c} (in {n} file(s))")).collect();
    outln!("    string columns: {}", if list.is_empty() { "none".to_string() } else { list.join(", ") });
    bad.print();
    let pick = strings.keys().find(|c| *c == "text").or(strings.keys().next()).cloned().unwrap_or_default();
    Box::new(move |p| {
        format!("  [data]\n  name = \"text\"\n  files = [\"{}\"]\n  text_field = \"{pick}\"", p.display())
    })
}

fn shards(files: &[PathBuf]) -> Suggest {
    let mut bad = Unreadable::default();
    let (mut samples, mut fields, mut labels) = (0usize, BTreeMap::<String, usize>::new(), BTreeMap::new());
    for f in files {
        // One open shard for all its `.cls` members (the labels are read by offset).
        match index_samples(std::slice::from_ref(f)).and_then(|s| Ok((s, pt_kit::shards::Shard::open(f)?))) {
            Ok((s, shard)) => {
                samples += s.len();
                for sample in &s {
                    for (ext, _) in &sample.fields {
                        *fields.entry(ext.clone()).or_default() += 1;
                    }
                    if let Some(m) = sample.field(&["cls"]) {
                        let label = shard.read(m).map(|b| String::from_utf8_lossy(&b).trim().to_string());
                        *labels.entry(label.unwrap_or_else(|e| e.message.to_string())).or_insert(0usize) += 1;
                    }
                }
            }
            Err(e) => bad.0.push((f.clone(), e.message.to_string())),
        }
    }
    outln!("  tar shards: {}, {samples} samples", files.len());
    let list: Vec<String> = fields.iter().map(|(e, n)| format!(".{e} {n}")).collect();
    outln!("    members: {}", list.join(", "));
    if !labels.is_empty() {
        outln!("    {} distinct .cls labels", labels.len());
    }
    bad.print();
    let has = |kinds: &[&str]| fields.keys().any(|e| kinds.contains(&e.as_str()));
    if !has(IMAGE) && !has(AUDIO) && has(&["txt"]) {
        return Box::new(|p| format!("  [data]\n  name = \"text\"\n  files = [\"{}\"]", p.display()));
    }
    if has(AUDIO) {
        return Box::new(|p| {
            format!("  [data]\n  name = \"audio\"\n  shards = [\"{}\"]\n  sample_rate = 16000", p.display())
        });
    }
    Box::new(|p| format!("  [data]\n  name = \"image_shards\"\n  shards = [\"{}\"]\n  image_size = 224", p.display()))
}

/// The folder a dataset reading folders is pointed at: `p`, or a file's parent.
fn folder(p: &Path) -> &Path {
    if p.is_file() {
        p.parent().unwrap_or(p)
    } else {
        p
    }
}

fn extension_counts(files: &[PathBuf]) -> String {
    let mut counts = BTreeMap::<String, usize>::new();
    for f in files {
        *counts.entry(f.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase()).or_default() += 1;
    }
    counts.iter().map(|(e, n)| format!(".{e} {n}")).collect::<Vec<_>>().join(", ")
}

/// `<a: n | a–b: n | … | ≥z: n` over bucket `edges`, with the minimum and maximum.
fn histogram(values: &[f64], edges: &[f64]) -> String {
    if values.is_empty() {
        return "none".into();
    }
    let mut counts = vec![0usize; edges.len() + 1];
    for &v in values {
        counts[edges.iter().take_while(|&&e| v >= e).count()] += 1;
    }
    let mut parts = vec![format!("<{}: {}", edges[0], counts[0])];
    for (i, w) in edges.windows(2).enumerate() {
        parts.push(format!("{}–{}: {}", w[0], w[1], counts[i + 1]));
    }
    parts.push(format!("≥{}: {}", edges[edges.len() - 1], counts[edges.len()]));
    let (min, max) = values.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    format!("{} (min {}, max {})", parts.join(" | "), (min * 10.0).round() / 10.0, (max * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_edges() {
        let h = histogram(&[0.5, 1.0, 3.0, 40.0], &[1.0, 2.0, 5.0]);
        assert_eq!(h, "<1: 1 | 1–2: 1 | 2–5: 1 | ≥5: 1 (min 0.5, max 40)");
    }

    #[test]
    fn class_folders_need_every_image_in_a_sub_folder() {
        let root = Path::new("/r");
        let nested = [PathBuf::from("/r/cat/1.png"), PathBuf::from("/r/dog/x/2.png")];
        assert_eq!(
            class_folders(root, &nested).into_iter().collect::<Vec<_>>(),
            [("cat".into(), 1), ("dog".into(), 1)]
        );
        assert!(class_folders(root, &[PathBuf::from("/r/1.png"), PathBuf::from("/r/cat/2.png")]).is_empty());
    }
}
