//! PNG plots: each file exists, decodes, has the expected size and real content (several
//! colours, the series / class colours, rendered text).

use pt_report::{
    plot_confusion, plot_image_grid, plot_lines, plot_scatter, smooth, LinePlot, ReportError, RgbImage, Series,
};
use std::collections::HashSet;
use std::path::Path;

fn decode(path: &Path) -> image::RgbImage {
    assert!(path.is_file(), "{} was not written", path.display());
    image::open(path).unwrap_or_else(|e| panic!("{} does not decode as an image: {e}", path.display())).to_rgb8()
}

fn distinct_colours(img: &image::RgbImage) -> usize {
    img.pixels().map(|p| p.0).collect::<HashSet<_>>().len()
}

fn count_colour(img: &image::RgbImage, rgb: [u8; 3]) -> usize {
    img.pixels().filter(|p| p.0 == rgb).count()
}

/// Dark pixels in a band of rows: text (title, labels) rendered with the embedded font.
fn dark_pixels(img: &image::RgbImage, rows: std::ops::Range<u32>) -> usize {
    rows.flat_map(|y| (0..img.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 100))
        .count()
}

const TAB_BLUE: [u8; 3] = [31, 119, 180];
const TAB_ORANGE: [u8; 3] = [255, 127, 14];

fn noisy_loss() -> Vec<(f64, f64)> {
    (0..500)
        .map(|i| {
            let x = i as f64;
            let noise = ((i * 7919) % 100) as f64 / 100.0 - 0.5;
            (x, 3.0 * (-x / 150.0).exp() + 0.4 + 0.3 * noise)
        })
        .collect()
}

#[test]
fn line_plot_has_size_series_legend_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves/loss.png"); // parent directory is created
    let mut points = noisy_loss();
    points[10].1 = f64::NAN;
    points[20].1 = f64::INFINITY;
    plot_lines(
        &path,
        &LinePlot {
            title: "Training loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: vec![
                Series { name: "train/loss".into(), points: points.clone() },
                Series { name: "smoothed".into(), points: smooth(&points, 25) },
            ],
            ..Default::default()
        },
    )
    .unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), (800, 500));
    assert!(distinct_colours(&img) > 20, "{} colours", distinct_colours(&img));
    assert!(count_colour(&img, TAB_BLUE) > 500, "first series not drawn");
    assert!(count_colour(&img, TAB_ORANGE) > 500, "second series not drawn");
    assert!(dark_pixels(&img, 0..40) > 40, "title not rendered");
    // The non-finite points did not blow up the y range: the curve spans most of the height.
    let blue_rows: Vec<u32> =
        (0..img.height()).filter(|&y| (0..img.width()).any(|x| img.get_pixel(x, y).0 == TAB_BLUE)).collect();
    let span = blue_rows.last().unwrap() - blue_rows.first().unwrap();
    assert!(span > 250, "curve spans only {span} pixel rows");
    // The legend has its own column right of the data: there, the first series' colour is only
    // the legend's swatch (a line of 22×3 pixels), never the curve.
    let legend_blue = (665..800)
        .flat_map(|x| (0..500).map(move |y| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0 == TAB_BLUE)
        .count();
    assert!((40..=100).contains(&legend_blue), "the legend sits beside the data: {legend_blue} blue pixels there");
    // The same picture as SVG, and the data as CSV.
    let svg = std::fs::read_to_string(path.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Training loss") && svg.contains("smoothed"), "{}", &svg[..200]);
    let csv = std::fs::read_to_string(path.with_extension("csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("series,x,y"));
    assert_eq!(lines.filter(|l| l.starts_with("train/loss,")).count(), 500, "every point of the first series");
}

#[test]
fn log_plot_of_a_custom_size_skips_non_positive_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lr.png");
    let mut points: Vec<(f64, f64)> = (0..300).map(|i| (i as f64, 1e-3 * 0.98f64.powi(i))).collect();
    points[0].1 = 0.0; // warm-up starts at lr = 0, which a log axis cannot show
    points[1].1 = -1.0;
    plot_lines(
        &path,
        &LinePlot {
            title: "lr".into(),
            series: vec![Series { name: "lr".into(), points }],
            log_y: true,
            width: 640,
            height: 360,
            ..Default::default()
        },
    )
    .unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), (640, 360));
    assert!(distinct_colours(&img) > 10);
    assert!(count_colour(&img, TAB_BLUE) > 300);
}

#[test]
fn confusion_matrix_is_a_heat_map_with_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("confusion.png");
    let matrix = vec![vec![50, 2, 1], vec![3, 40, 7], vec![0, 5, 45]];
    plot_confusion(&path, &matrix, &["negative", "neutral", "positive"], "Sentiment").unwrap();
    let img = decode(&path);
    let (w, h) = img.dimensions();
    assert!((320..=900).contains(&w) && (200..=900).contains(&h), "{w}x{h}");
    assert!(distinct_colours(&img) > 20);
    // The largest count's cell is the darkest heat colour; white counts are drawn on it.
    let darkest = [8, 48, 107];
    assert!(count_colour(&img, darkest) > 1000, "no cell at full intensity");
    assert!(dark_pixels(&img, 0..35) > 40, "title not rendered");

    // Many classes make a larger image with square cells.
    let n = 40;
    let big: Vec<Vec<u64>> =
        (0..n).map(|t| (0..n).map(|p| if t == p { 90 } else { (t + p) as u64 % 4 }).collect()).collect();
    let names: Vec<String> = (0..n).map(|i| format!("class {i}")).collect();
    let big_path = dir.path().join("confusion40.png");
    plot_confusion(&big_path, &big, &names, "40 classes").unwrap();
    let big_img = decode(&big_path);
    assert!(big_img.width() > w && big_img.height() > h);
    // Beside the picture: the same as SVG, and the matrix as JSON.
    assert!(std::fs::read_to_string(path.with_extension("svg")).unwrap().starts_with("<svg"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path.with_extension("json")).unwrap()).unwrap();
    assert_eq!(json["matrix"][1][2], 7);
    assert_eq!(json["names"][2], "positive");
    assert_eq!(json["scale_top"], 50);
}

#[test]
fn confusion_rejects_bad_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.png");
    let ragged = vec![vec![1, 2], vec![3]];
    let err = plot_confusion(&path, &ragged, &["a", "b"], "t").err().unwrap();
    assert!(err.to_string().contains("row 1 has 1 entries"), "{err}");
    let err = plot_confusion(&path, &[vec![1, 2], vec![3, 4]], &["a"], "t").err().unwrap();
    assert!(err.to_string().contains("class names"), "{err}");
    assert!(!path.exists());
}

#[test]
fn scatter_colours_each_class() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("features.png");
    let points: Vec<(f64, f64, usize)> = (0..600)
        .map(|i| {
            let class = i % 3;
            let angle = class as f64 * 2.1 + (i as f64 * 0.37).sin() * 0.3;
            let radius = 4.0 + (i as f64 * 0.11).cos();
            (radius * angle.cos(), radius * angle.sin(), class)
        })
        .chain([(f64::NAN, 1.0, 0)])
        .collect();
    plot_scatter(&path, &points, &["cat", "dog", "ship"], "PCA of features").unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), (800, 500));
    // Legend markers are drawn opaque in the class colours (points are translucent).
    for colour in [TAB_BLUE, TAB_ORANGE, [44, 160, 44]] {
        assert!(count_colour(&img, colour) > 20, "class colour {colour:?} missing");
    }
    assert!(distinct_colours(&img) > 30);
    assert!(dark_pixels(&img, 0..35) > 40, "title not rendered");
    assert!(std::fs::read_to_string(path.with_extension("svg")).unwrap().contains("PCA of features"));
    let csv = std::fs::read_to_string(path.with_extension("csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("x,y,class,name"));
    assert_eq!(csv.lines().filter(|l| l.ends_with(",2,ship")).count(), 200, "every point of class 2");

    let err = plot_scatter(&path, &[(0.0, 0.0, 5)], &["a"], "t").err().unwrap();
    assert!(matches!(err, ReportError::InvalidInput(_)), "{err}");
}

#[test]
fn image_grid_tiles_scaled_images() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("filters.png");
    // Four 3x2 images, each pixel a distinct colour.
    let images: Vec<RgbImage> = (0..4u8)
        .map(|k| {
            let pixels = (0..6u8).flat_map(|p| [k * 60, p * 40, 255 - p * 40]).collect();
            (3, 2, pixels)
        })
        .collect();
    plot_image_grid(&path, &images, 2, 4).unwrap();
    let img = decode(&path);
    // 2 columns of (3*4 + 2 gap) + 2, 2 rows of (2*4 + 2) + 2.
    assert_eq!(img.dimensions(), (30, 22));
    assert_eq!(img.get_pixel(0, 0).0, [200, 200, 200], "gap is background");
    assert_eq!(img.get_pixel(2, 2).0, [0, 0, 255], "image 0, pixel (0,0)");
    assert_eq!(img.get_pixel(5, 5).0, [0, 0, 255], "pixel scaled to 4x4");
    assert_eq!(img.get_pixel(6, 2).0, [0, 40, 215], "image 0, pixel (1,0)");
    assert_eq!(img.get_pixel(2, 6).0, [0, 120, 135], "image 0, pixel (0,1)");
    assert_eq!(img.get_pixel(16, 2).0, [60, 0, 255], "image 1 in the second column");
    assert_eq!(img.get_pixel(2, 12).0, [120, 0, 255], "image 2 in the second row");
    assert!(distinct_colours(&img) > 5);
}

#[test]
fn bad_plot_inputs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = plot_image_grid(&dir.path().join("g.png"), &[(2, 2, vec![0; 11])], 1, 1).err().unwrap();
    assert!(err.to_string().contains("image 0 is 2x2 but has 11 bytes"), "{err}");
    assert!(plot_image_grid(&dir.path().join("g.png"), &[], 1, 1).is_err());
    assert!(plot_image_grid(&dir.path().join("g.png"), &[(1, 1, vec![0; 3])], 0, 1).is_err());
    let err = plot_lines(&dir.path().join("plot.jpg"), &LinePlot::default()).err().unwrap();
    assert!(err.to_string().contains(".png"), "{err}");
    let huge = LinePlot { width: 100_000, ..Default::default() };
    assert!(plot_lines(&dir.path().join("huge.png"), &huge).is_err());
}

#[test]
fn an_empty_plot_still_renders_axes_and_title() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.png");
    let plot = LinePlot {
        title: "no data yet".into(),
        series: vec![Series { name: "loss".into(), points: vec![(f64::NAN, f64::NAN)] }],
        ..Default::default()
    };
    plot_lines(&path, &plot).unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), (800, 500));
    assert!(dark_pixels(&img, 0..40) > 40);
}
