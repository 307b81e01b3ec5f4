//! Decoding one encoded image (PNG/JPEG bytes, or an SVG drawn by resvg) into
//! `[channels, size, size]` bytes: the size checked from the header before anything is decoded,
//! the aspect ratio kept (shorter side to the size, then the centre square) unless stretching
//! is asked for. Resampling is fast_image_resize's SIMD bilinear convolution (antialiased when
//! shrinking, like PIL's); an SVG is drawn with its shorter side at the size asked (then only
//! cropped, or resampled when stretching).

use fast_image_resize::images::Image as FirImage;
use fast_image_resize::{FilterType as FirFilter, PixelType, ResizeAlg, ResizeOptions, Resizer};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// The shorter side to `image_size`, then the centre square (torchvision's Resize + CenterCrop).
    #[default]
    Crop,
    /// Both sides to `image_size`, whatever the aspect ratio.
    Stretch,
}

/// The image files pt reads (lowercase extensions; in tar shards, the member's field).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "svg"];

/// How images become tensors' bytes.
#[derive(Clone, Copy, Debug)]
pub struct ImageParams {
    /// None: keep the native size.
    pub image_size: Option<u32>,
    pub resize: ResizeMode,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: i64,
    pub max_pixels: u64,
}

/// (width, height) from the image file's header alone (nothing decoded; an SVG's own size).
pub fn header_dimensions(path: &std::path::Path) -> std::result::Result<(u32, u32), String> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg")) {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let tree = resvg::usvg::Tree::from_data(&bytes, &resvg::usvg::Options::default())
            .map_err(|e| format!("not a readable SVG ({e})"))?;
        return Ok((tree.size().width().round() as u32, tree.size().height().round() as u32));
    }
    let reader = image::io::Reader::open(path).map_err(|e| e.to_string())?;
    reader.with_guessed_format().map_err(|e| e.to_string())?.into_dimensions().map_err(|e| e.to_string())
}

fn check_pixels(w: u32, h: u32, max_pixels: u64) -> std::result::Result<(), String> {
    if w as u64 * h as u64 > max_pixels {
        return Err(format!(
            "{w}×{h} = {} pixels, more than max_pixels = {max_pixels} (a decompression bomb, or raise max_pixels)",
            w as u64 * h as u64
        ));
    }
    Ok(())
}

/// `[channels, height, width]` bytes of the encoded image `bytes`, and (height, width).
pub fn decode_image(bytes: &[u8], p: &ImageParams) -> std::result::Result<(Vec<u8>, i64, i64), String> {
    let img = if is_svg(bytes) {
        over_white(draw_svg(bytes, p.image_size, p.max_pixels)?)
    } else {
        let reader =
            || image::io::Reader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string());
        let (w, h) = reader()?.into_dimensions().map_err(|e| e.to_string())?;
        check_pixels(w, h, p.max_pixels)?;
        over_white(reader()?.decode().map_err(|e| e.to_string())?)
    };
    let (pixels, pixel_type) = if p.channels == 1 {
        (img.to_luma8().into_raw(), PixelType::U8)
    } else {
        (img.to_rgb8().into_raw(), PixelType::U8x3)
    };
    let (w, h) = (img.width(), img.height());
    let (interleaved, w, h) = match p.image_size {
        Some(s) if (w, h) != (s, s) => {
            let src = FirImage::from_vec_u8(w, h, pixels, pixel_type).map_err(|e| e.to_string())?;
            let mut dst = FirImage::new(s, s, pixel_type);
            let mut options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FirFilter::Bilinear));
            if p.resize == ResizeMode::Crop {
                // The centre square: the region Resize(s) + CenterCrop(s) keeps.
                let short = w.min(h) as f64;
                options = options.crop((w as f64 - short) / 2.0, (h as f64 - short) / 2.0, short, short);
            }
            Resizer::new().resize(&src, &mut dst, &options).map_err(|e| e.to_string())?;
            (dst.into_vec(), s as i64, s as i64)
        }
        _ => (pixels, w as i64, h as i64),
    };
    // HWC → CHW
    let plane = (w * h) as usize;
    let c = p.channels as usize;
    let mut chw = vec![0u8; plane * c];
    for (i, px) in interleaved.chunks_exact(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            chw[ch * plane + i] = v;
        }
    }
    Ok((chw, h, w))
}

/// An SVG document (by its first bytes: markup whose first element is `<svg`, after an optional
/// byte-order mark, XML declaration, comments or doctype).
fn is_svg(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(64 << 10)]);
    let text = head.trim_start_matches('\u{feff}').trim_start();
    text.starts_with('<')
        && text.find("<svg").is_some_and(|at| !text[..at].contains("<!--") || text[..at].contains("-->"))
}

/// An SVG drawn so that its shorter side is `size` pixels (its own size when None): RGBA,
/// transparent where nothing is drawn. Text is not drawn (no fonts are loaded).
fn draw_svg(bytes: &[u8], size: Option<u32>, max_pixels: u64) -> std::result::Result<image::DynamicImage, String> {
    use resvg::{tiny_skia, usvg};
    let tree =
        usvg::Tree::from_data(bytes, &usvg::Options::default()).map_err(|e| format!("not a readable SVG ({e})"))?;
    let own = tree.size();
    let scale = size.map_or(1.0, |s| s as f32 / own.width().min(own.height()));
    let (w, h) = ((own.width() * scale).round().max(1.0) as u32, (own.height() * scale).round().max(1.0) as u32);
    check_pixels(w, h, max_pixels)?;
    let mut pixmap = tiny_skia::Pixmap::new(w, h).ok_or_else(|| format!("an SVG of {w}×{h} pixels cannot be drawn"))?;
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    // tiny-skia keeps premultiplied colour; images keep straight alpha.
    let rgba: Vec<u8> = pixmap
        .pixels()
        .iter()
        .flat_map(|px| {
            let c = px.demultiply();
            [c.red(), c.green(), c.blue(), c.alpha()]
        })
        .collect();
    let img = image::RgbaImage::from_raw(w, h, rgba).ok_or("the drawn SVG has the wrong size")?;
    Ok(image::DynamicImage::ImageRgba8(img))
}

/// An image with transparency composited over white (icons, emoji: dropping the alpha channel
/// would show whatever colour the transparent pixels happen to store, often black).
fn over_white(img: image::DynamicImage) -> image::DynamicImage {
    if !img.color().has_alpha() {
        return img;
    }
    let mut rgba = img.to_rgba8();
    for px in rgba.pixels_mut() {
        let a = px[3] as u32;
        for c in 0..3 {
            px[c] = ((px[c] as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
        }
        px[3] = 255;
    }
    image::DynamicImage::ImageRgba8(rgba)
}

/// The images of `indices` decoded on `pool`, back to back: `read(i)` gives sample i's encoded
/// bytes and how a user finds it (a path, `shard.tar: member …`), which an error names.
pub fn decode_on(
    pool: &rayon::ThreadPool,
    indices: &[usize],
    params: &ImageParams,
    read: impl Fn(usize) -> crate::Result<(Vec<u8>, String)> + Sync,
) -> crate::Result<Vec<u8>> {
    use rayon::prelude::*;
    let images: Vec<Vec<u8>> = pool.install(|| {
        indices
            .par_iter()
            .map(|&i| {
                let (bytes, what) = read(i)?;
                decode_image(&bytes, params)
                    .map(|(chw, _, _)| chw)
                    .map_err(|why| crate::PtError::data(format!("{what}: cannot decode the image ({why})")))
            })
            .collect::<crate::Result<_>>()
    })?;
    Ok(images.concat())
}

/// Up to `n` of `len` sample indices spread evenly (all of them when `n` ≥ `len`): the images
/// whose statistics stand for a set too large to decode whole (files are often sorted by class).
pub fn spread_indices(len: usize, n: usize) -> Vec<usize> {
    if n >= len {
        return (0..len).collect();
    }
    (0..n).map(|k| k * len / n).collect()
}

/// A pool of `workers` decoding threads (0: one per CPU).
pub fn decoding_pool(workers: usize) -> crate::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(|i| format!("pt-decode-{i}"))
        .build()
        .map_err(|e| crate::PtError::data(format!("cannot start the image decoding threads ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2×1 PNG: a fully transparent black pixel and a half-transparent red one.
    fn transparent_png(grey: bool) -> Vec<u8> {
        let img = if grey {
            image::DynamicImage::ImageLumaA8(image::ImageBuffer::from_raw(2, 1, vec![0, 0, 0, 128]).unwrap())
        } else {
            image::DynamicImage::ImageRgba8(
                image::ImageBuffer::from_raw(2, 1, vec![0, 0, 0, 0, 255, 0, 0, 128]).unwrap(),
            )
        };
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageOutputFormat::Png).unwrap();
        bytes
    }

    #[test]
    fn an_svg_is_drawn_at_the_size_asked_over_white() {
        // A 10×20 drawing: its top half red, the rest transparent.
        let svg = br##"<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" width="10" height="20" viewBox="0 0 10 20">
  <rect x="0" y="0" width="10" height="10" fill="#ff0000"/>
</svg>"##;
        assert!(is_svg(svg) && !is_svg(&transparent_png(false)) && !is_svg(b"<html><p>svg</p></html>"));
        assert_eq!(spread_indices(10, 4), [0, 2, 5, 7]);
        assert_eq!(spread_indices(3, 4), [0, 1, 2]);
        // Shorter side to 4: drawn at 4×8, then the centre 4×4 square (rows 2..6 of 8).
        let p = ImageParams { image_size: Some(4), resize: ResizeMode::Crop, channels: 3, max_pixels: 1000 };
        let (chw, h, w) = decode_image(svg, &p).unwrap();
        assert_eq!((h, w), (4, 4));
        let (red, green) = (&chw[..16], &chw[16..32]);
        assert_eq!(&red[..8], [255; 8], "rows 0-1 (drawn rows 2-3): red over white");
        assert_eq!(&green[..8], [0; 8]);
        assert_eq!(&green[8..], [255; 8], "rows 2-3 (drawn rows 4-5): nothing drawn, white");
        let p = ImageParams { image_size: Some(400), resize: ResizeMode::Crop, channels: 3, max_pixels: 1000 };
        assert!(decode_image(svg, &p).unwrap_err().contains("max_pixels"));
        let err = decode_image(b"<svg xmlns='http://www.w3.org/2000/svg'><rect", &p).unwrap_err();
        assert!(err.contains("not a readable SVG"), "{err}");
    }

    #[test]
    fn transparency_is_composited_over_white() {
        let p = ImageParams { image_size: None, resize: ResizeMode::Crop, channels: 3, max_pixels: 100 };
        let (chw, h, w) = decode_image(&transparent_png(false), &p).unwrap();
        assert_eq!((h, w), (1, 2));
        // CHW: red plane, green plane, blue plane; pixel 0 white, pixel 1 red at half over white.
        assert_eq!(chw, [255, 255, 255, 127, 255, 127]);
        let (grey, _, _) = decode_image(&transparent_png(true), &p).unwrap();
        assert_eq!(grey, [255, 127, 255, 127, 255, 127]);
    }
}
