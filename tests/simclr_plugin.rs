//! Issue 7 through the `pt` binary: the SimCLR plugin installs with `pt plugin install` into a
//! pt that has only the ResNet plugin, then trains the ResNet plugin's encoder with its own
//! objective on real images, with the linear-probe and kNN evaluators.

use pt_tests::*;
use std::process::Command;

#[test]
fn simclr_installs_and_trains_the_resnet_plugins_encoder() {
    let data = data_dir("images");
    // A pt installation with the ResNet plugin next to the binary and no SimCLR.
    let bin = tempfile::tempdir().unwrap();
    for file in ["pt", "pt-engine", "libpt_resnet.so"] {
        std::fs::copy(release_dir().join(file), bin.path().join(file)).unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let pt = |args: &[&str]| {
        let out = Command::new(bin.path().join("pt"))
            .env("PT_HOME", home.path())
            .env_remove("PT_PLUGIN_PATH")
            .args(args)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("without-simclr");
    let (ok, err) = pt(&[
        "train",
        "--objective",
        "simclr",
        "--arch",
        "resnet18",
        "--max-steps",
        "1",
        "--run-dir",
        scratch.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("simclr"), "without the plugin the objective is missing: {err}");

    let (ok, out) = pt(&["plugin", "install", plugin_so("pt_simclr").to_str().unwrap()]);
    assert!(ok && out.contains("installed simclr"), "{out}");

    let digits = format!(
        r#"name = "pixel_csv", path = "{}", mean = [0.305], std = [0.376]"#,
        data.join("images/digits/digits.csv").display()
    );
    let recipe = format!(
        r#"
[run]
seed = 2
device = "cpu"
batch_size = 32
max_steps = 6
log_every = 1
grad_clip = 0.0
num_threads = 2

[checkpoint]
every = 6
[data]
{data}
split = "train"

[arch]
name = "resnet18"
num_classes = 0
width = 16

[objective]
name = "simclr"
temperature = 0.2

[optim]
name = "lars"
lr = 0.1

[[eval]]
name = "knn"
k = 20
every = 3
layer = ["layer2", "layer4"]
splits.train = {{ {digits}, split = "train" }}
splits.test = {{ {digits}, split = "test" }}

[[eval]]
name = "linear_probe"
epochs = 5
splits.train = {{ {digits}, split = "train" }}
splits.test = {{ {digits}, split = "test" }}
"#,
        data = digits.replace(", ", "\n")
    );
    let recipe = write_file(dir.path(), "r.toml", &recipe);
    let run = dir.path().join("run");
    let (ok, out) = pt(&["train", "--recipe", recipe.to_str().unwrap(), "--run-dir", run.to_str().unwrap(), "--quiet"]);
    assert!(ok, "{out}");
    // Issue 22: the views' crops and colour factors are drawn on the loader thread (a plugin
    // loaded from its .so), so the step uploads none of them.
    let log = std::fs::read_to_string(run.join("train.log")).unwrap();
    assert!(log.contains("draws its randomness on the loader thread"), "{log}");

    let rows = metrics_rows(&run);
    let value = |r: &pt_report::MetricsRow, name: &str| r.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let nt_xent: Vec<f64> = rows.iter().filter_map(|r| value(r, "nt_xent")).collect();
    assert_eq!(nt_xent.len(), 6);
    assert!(nt_xent.iter().all(|v| v.is_finite() && *v > 0.0), "{nt_xent:?}");
    assert!(rows.iter().any(|r| value(r, "probe_accuracy").is_some()), "the online probe reports");
    // Issue 24: the kNN monitor runs every 3 steps on its own (`[run] eval_every` is unset), at
    // two taps, and its curve is drawn beside the loss.
    let monitored: Vec<f64> =
        rows.iter().filter(|r| value(r, "knn/accuracy@layer2").is_some()).map(|r| r.step as f64).collect();
    assert_eq!(monitored, [3.0, 6.0], "a kNN monitor at steps 3 and 6 (the end)");
    assert!(rows.iter().any(|r| value(r, "knn/accuracy@layer4").is_some()));
    assert!(run.join("monitor.png").is_file(), "monitor.png beside loss.png");
    // TensorBoard gets the pictures (IMAGES; the monitor once it has two points), the run's plan
    // (HPARAMS) and each weight's distribution at each save (HISTOGRAMS) as well as scalars.
    let tb = "import sys\nfrom tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n\
from tensorboard.plugins.hparams import plugin_data_pb2\n\
a = EventAccumulator(sys.argv[1], size_guidance={'images': 0}); a.Reload()\n\
h = plugin_data_pb2.HParamsPluginData.FromString(a.PluginTagToContent('hparams')['_hparams_/session_start_info'])\n\
w = a.Histograms('weights/conv1.weight')[-1]\n\
print(sorted(a.Tags()['images']), [e.step for e in a.Images('curves/monitor')], h.session_start_info.hparams['optim.lr'].number_value, h.session_start_info.hparams['objective.name'].string_value, w.step, int(w.histogram_value.num), int(sum(w.histogram_value.bucket)))";
    let out = std::process::Command::new(python()).arg("-c").arg(tb).arg(run.join("tb")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "['curves/loss', 'curves/monitor'] [6] 0.1 simclr 6 2352 2352",
        "TensorBoard's view of the run"
    );
    let s = summary(&run);
    for eval in ["knn", "linear_probe"] {
        let acc = s["evals"][eval]["metrics"]["accuracy"].as_f64().unwrap();
        assert!(acc > 0.3, "{eval} accuracy {acc} is far above chance (0.1) even for a barely trained encoder");
    }
    let ckpt = checkpoint_dir(&run, 6);
    let objective = read_safetensors(&ckpt.join("objective.safetensors"));
    assert!(
        objective.contains_key("projector.0.weight") && objective.contains_key("online_probe.weight"),
        "{:?}",
        objective.keys()
    );
    let model = read_safetensors(&ckpt.join("model.safetensors"));
    assert!(
        model.contains_key("layer4.1.bn2.running_mean") && !model.contains_key("fc.weight"),
        "a headless trunk with BatchNorm buffers"
    );
    let manifest = std::fs::read_to_string(ckpt.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"simclr\"") && manifest.contains("\"resnet\""), "both plugins are recorded");
}

/// Issue 21: SimCLR pretrains on a user's flat folder of unlabelled photos of mixed sizes and
/// aspect ratios (it used to be rejected: one sub-folder per class was required).
#[test]
fn simclr_pretrains_on_a_flat_folder_of_unlabelled_images() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    let mut state = 11u64;
    for i in 0..24u32 {
        let (w, h) = (24 + (i % 3) * 8, 16 + (i % 2) * 12);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let noise = (state >> 58) as u8;
            image::Rgb([((x * 9 + i * 17) % 256) as u8, ((y * 7) % 256) as u8 ^ noise, (i * 10) as u8])
        });
        let path = photos.join(format!("day-{}/img-{i:02}.png", i % 4));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        img.save(&path).unwrap();
    }
    let recipe = write_file(
        dir.path(),
        "recipe.toml",
        &format!(
            r#"
[run]
seed = 1
device = "cpu"
batch_size = 8
max_steps = 2
log_every = 1
num_threads = 1

[data]
name = "image_folder"
path = "{}"
labels = "none"   # sub-folders by day are not classes
image_size = 16

[arch]
name = "resnet18"
width = 8
small_stem = true

[objective]
name = "simclr"

[optim]
name = "lars"
lr = 0.1
"#,
            photos.display()
        ),
    );
    let pt = Pt::new();
    let run = dir.path().join("run");
    let out = pt.ok(&["train", "--recipe", recipe.to_str().unwrap(), "--run-dir", run.to_str().unwrap()]);
    assert!(out.contains("stopped: MaxSteps at step 2"), "{out}");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        config.contains("[arch] num_classes unset: [data] resnet:image_folder (num_classes) had no value"),
        "unlabelled data gives no classes (a headless encoder):\n{config}"
    );
    assert!(metric_at(&run, 2, "loss").is_some_and(f64::is_finite));
}
