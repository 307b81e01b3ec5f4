//! Where image–caption pairs come from, all giving the same records:
//! - a JSONL file, one pair per line: `{"image": "path relative to the file", "caption": "…"}`
//!   or `"captions": […]`, any other fields kept (e.g. `"group"` to classify by);
//! - a folder of images (any depth) each with a sidecar caption file of the same name
//!   (`cat/1.png` + `cat/1.txt`, one caption per line); its folder is the field `folder`;
//! - WebDataset-style tar shards (a `.tar` file, or a folder of them): `key.png|jpg|jpeg|svg` with
//!   `key.txt` (one caption per line) and optionally `key.json` (fields).

use crate::files::expand_sources;
use crate::shards::{index_samples, read_member, TarMember};
use crate::{PtError, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub use crate::vision::decode::IMAGE_EXTENSIONS;

/// Where one pair's image bytes are.
#[derive(Clone)]
pub enum ImageSource {
    File(PathBuf),
    Member { shard: PathBuf, member: TarMember },
}

impl ImageSource {
    pub fn read(&self) -> Result<Vec<u8>> {
        match self {
            ImageSource::File(p) => std::fs::read(p).map_err(|e| PtError::io(p, e)),
            ImageSource::Member { shard, member } => read_member(shard, member),
        }
    }

    /// The image as a user finds it: its path, or `shard.tar:member`.
    pub fn describe(&self) -> String {
        match self {
            ImageSource::File(p) => p.display().to_string(),
            ImageSource::Member { shard, member } => format!("{}:{}", shard.display(), member.name),
        }
    }
}

/// One image with its captions (at least one, none empty) and its other fields.
pub struct Pair {
    pub image: ImageSource,
    pub captions: Vec<String>,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// The pairs at `path`: shards when it is a `.tar` file or a folder holding `.tar` files, a
/// folder of images with sidecar captions when it is another folder, else a JSONL file (whose
/// lines need `caption`/`captions` unless `captions_elsewhere`: a caller then takes them from
/// other fields).
pub fn read_pairs(path: &Path, captions_elsewhere: bool) -> Result<Vec<Pair>> {
    let is_tar = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("tar"));
    let pairs = if path.is_dir() {
        let has_shards =
            std::fs::read_dir(path).map_err(|e| PtError::io(path, e))?.flatten().any(|e| is_tar(&e.path()));
        if has_shards {
            from_shards(path)?
        } else {
            from_folder(path)?
        }
    } else if is_tar(path) {
        from_shards(path)?
    } else {
        from_jsonl(path, captions_elsewhere)?
    };
    if pairs.is_empty() {
        return Err(PtError::data(format!("{}: no image–caption pairs", path.display())));
    }
    Ok(pairs)
}

/// Non-empty caption lines of a caption file's text.
fn caption_lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

#[derive(Deserialize)]
struct JsonPair {
    image: String,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    captions: Vec<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

fn from_jsonl(path: &Path, captions_elsewhere: bool) -> Result<Vec<Pair>> {
    let text = std::fs::read_to_string(path).map_err(|e| PtError::io(path, e))?;
    let root = path.parent().unwrap_or(Path::new("."));
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{}:{}", path.display(), n + 1);
        let mut pair: JsonPair = serde_json::from_str(line).map_err(|e| {
            PtError::data(format!("{}: not a pair object ({e}); expected {{\"image\": …, \"caption\": …}}", at()))
        })?;
        pair.captions.extend(pair.caption.take());
        pair.captions.retain(|c| !c.trim().is_empty());
        if pair.captions.is_empty() && !captions_elsewhere {
            return Err(PtError::data(format!("{}: no caption (give `caption` or a non-empty `captions` list)", at())));
        }
        let image = root.join(&pair.image);
        if !image.is_file() {
            return Err(PtError::data(format!("{}: image {} not found", at(), image.display())));
        }
        pairs.push(Pair { image: ImageSource::File(image), captions: pair.captions, fields: pair.rest });
    }
    Ok(pairs)
}

fn from_folder(root: &Path) -> Result<Vec<Pair>> {
    let images = expand_sources(&[root.to_path_buf()], &IMAGE_EXTENSIONS, "path")?;
    let mut pairs = Vec::with_capacity(images.len());
    for image in images {
        let sidecar = image.with_extension("txt");
        let text = std::fs::read_to_string(&sidecar).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PtError::data(format!(
                "{}: no caption file {} beside it (one caption per line)",
                image.display(),
                sidecar.display()
            )),
            _ => PtError::io(&sidecar, e),
        })?;
        let captions = caption_lines(&text);
        if captions.is_empty() {
            return Err(PtError::data(format!("{}: the caption file is empty", sidecar.display())));
        }
        let mut fields = serde_json::Map::new();
        if let Some(folder) = image.parent().filter(|p| *p != root).and_then(|p| p.file_name()) {
            fields.insert("folder".into(), folder.to_string_lossy().into_owned().into());
        }
        pairs.push(Pair { image: ImageSource::File(image), captions, fields });
    }
    Ok(pairs)
}

fn from_shards(path: &Path) -> Result<Vec<Pair>> {
    let shards = expand_sources(&[path.to_path_buf()], &["tar"], "path")?;
    let mut pairs = Vec::new();
    for sample in index_samples(&shards)? {
        let shard = &shards[sample.shard as usize];
        let at = || format!("{}: sample '{}'", shard.display(), sample.key);
        let image = sample
            .field(&IMAGE_EXTENSIONS)
            .ok_or_else(|| PtError::data(format!("{}: no .png/.jpg/.jpeg/.svg member", at())))?;
        let caption =
            sample.field(&["txt"]).ok_or_else(|| PtError::data(format!("{}: no .txt caption member", at())))?;
        let captions = caption_lines(&String::from_utf8_lossy(&read_member(shard, caption)?));
        if captions.is_empty() {
            return Err(PtError::data(format!("{}: the caption is empty", at())));
        }
        let fields = match sample.field(&["json"]) {
            Some(m) => serde_json::from_slice(&read_member(shard, m)?)
                .map_err(|e| PtError::data(format!("{}: the .json member is not an object ({e})", at())))?,
            None => serde_json::Map::new(),
        };
        pairs.push(Pair {
            image: ImageSource::Member { shard: shard.clone(), member: image.clone() },
            captions,
            fields,
        });
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::TarWriter;

    fn png(shade: u8) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(4, 4, image::Rgb([shade, 0, 0]));
        let mut bytes = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageOutputFormat::Png)
            .unwrap();
        bytes
    }

    fn summary(pairs: &[Pair]) -> Vec<(Vec<String>, Option<String>, usize)> {
        pairs
            .iter()
            .map(|p| {
                let field = p.fields.get("folder").or(p.fields.get("kind")).and_then(|v| v.as_str()).map(String::from);
                (p.captions.clone(), field, p.image.read().unwrap().len())
            })
            .collect()
    }

    #[test]
    fn jsonl_folders_and_shards_give_the_same_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // A folder: cat/1.png + cat/1.txt (two captions), dog/2.png + dog/2.txt.
        for (folder, name, text, shade) in [("cat", "1", "a cat\n\nsmall cat\n", 10), ("dog", "2", "a dog", 20)] {
            std::fs::create_dir_all(root.join("folder").join(folder)).unwrap();
            std::fs::write(root.join("folder").join(folder).join(format!("{name}.png")), png(shade)).unwrap();
            std::fs::write(root.join("folder").join(folder).join(format!("{name}.txt")), text).unwrap();
        }
        let from_folder = summary(&read_pairs(&root.join("folder"), false).unwrap());
        // The same as JSONL (paths relative to the file) and as a shard.
        let jsonl = root.join("pairs.jsonl");
        std::fs::write(
            &jsonl,
            "{\"image\": \"folder/cat/1.png\", \"captions\": [\"a cat\", \"small cat\"], \"folder\": \"cat\"}\n\
             {\"image\": \"folder/dog/2.png\", \"caption\": \"a dog\", \"folder\": \"dog\"}\n",
        )
        .unwrap();
        let mut tar = TarWriter::new(std::fs::File::create(root.join("pairs.tar")).unwrap());
        for (key, text, shade, kind) in [("1", "a cat\nsmall cat", 10, "cat"), ("2", "a dog", 20, "dog")] {
            tar.add(&format!("{key}.png"), &png(shade)).unwrap();
            tar.add(&format!("{key}.txt"), text.as_bytes()).unwrap();
            tar.add(&format!("{key}.json"), format!("{{\"kind\": \"{kind}\"}}").as_bytes()).unwrap();
        }
        tar.finish().unwrap();
        assert_eq!(from_folder[0].0, ["a cat", "small cat"]);
        assert_eq!(from_folder[1].1.as_deref(), Some("dog"));
        assert_eq!(summary(&read_pairs(&jsonl, false).unwrap()), from_folder);
        assert_eq!(summary(&read_pairs(&root.join("pairs.tar"), false).unwrap()), from_folder);
    }

    #[test]
    fn a_pair_without_its_image_or_caption_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("p.jsonl");
        std::fs::write(&jsonl, "{\"image\": \"missing.png\", \"caption\": \"x\"}\n").unwrap();
        let e = read_pairs(&jsonl, false).err().unwrap().to_string();
        assert!(e.contains("p.jsonl:1: image") && e.contains("missing.png not found"), "{e}");
        std::fs::write(dir.path().join("a.png"), png(1)).unwrap();
        std::fs::write(&jsonl, "{\"image\": \"a.png\", \"captions\": [\" \"]}\n").unwrap();
        assert!(read_pairs(&jsonl, false).err().unwrap().to_string().contains("p.jsonl:1: no caption"));
        std::fs::write(&jsonl, "not json\n").unwrap();
        assert!(read_pairs(&jsonl, false).err().unwrap().to_string().contains("p.jsonl:1: not a pair object"));
        let folder = dir.path().join("f");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("b.png"), png(2)).unwrap();
        let e = read_pairs(&folder, false).err().unwrap().to_string();
        assert!(e.contains("b.png: no caption file") && e.contains("b.txt"), "{e}");
    }
}
