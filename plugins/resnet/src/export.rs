//! `pt export --format`: a ResNet as torchvision's state dict (the names pt trains under), as
//! transformers' `ResNetModel` / `ResNetForImageClassification` (its own names and config,
//! <https://github.com/huggingface/transformers/blob/main/src/transformers/models/resnet/modeling_resnet.py>)
//! or as a timm model directory (torchvision's names with timm's `config.json`,
//! <https://github.com/huggingface/pytorch-image-models/blob/main/timm/models/resnet.py>).

use crate::config::{Depth, ResNetConfig};
use pt_sdk::ExportFormat;

/// The formats this ResNet can be written in: torchvision's layout always; transformers' and
/// timm's when their models can express it (torchvision's 7×7 stem, BatchNorm eps 1e-5; timm's
/// plain stem is 64 channels wide and reads 1 or 3 input channels as saved).
pub fn formats(depth: Depth, config: &ResNetConfig, names: &[String]) -> Vec<ExportFormat> {
    let classes = config.num_classes.unwrap_or(0);
    let torchvision = ExportFormat {
        name: "torchvision".into(),
        loads_with: format!(
            "torchvision.models.{}(num_classes={}).load_state_dict(safetensors.torch.load_file(DIR/model.safetensors)){}",
            depth.name(),
            if classes > 0 { classes } else { 1000 },
            if classes > 0 { "" } else { " with strict=False (headless: no fc)" }
        ),
        config: serde_json::Value::Null,
        names: Vec::new(),
    };
    let mut formats = vec![torchvision];
    if !config.small_stem && (config.bn_eps - 1e-5).abs() < 1e-12 {
        let head = classes > 0;
        let renamed: Option<Vec<(String, String)>> =
            names.iter().map(|n| hf_name(n, head).map(|h| (n.clone(), h))).collect();
        if let Some(renamed) = renamed {
            let class = if head { "ResNetForImageClassification" } else { "ResNetModel" };
            formats.push(ExportFormat {
                name: "hf".into(),
                loads_with: format!("transformers {class}.from_pretrained(DIR)"),
                config: hf_config(depth, config, class),
                names: renamed,
            });
        }
        // timm adapts a first convolution of other than 3 channels when it loads (summing to 1,
        // and no other count), so 1 and 3 load as saved.
        if config.width == 64 && matches!(config.in_channels, 1 | 3) {
            formats.push(ExportFormat {
                name: "timm".into(),
                loads_with: "timm.create_model(\"local-dir:DIR\", pretrained=True)".into(),
                config: timm_config(depth, config),
                names: Vec::new(),
            });
        }
    }
    formats
}

/// timm's `config.json` for a model directory (`local-dir:`): the architecture, its classes
/// and input channels; timm's ResNets use torchvision's parameter names.
fn timm_config(depth: Depth, config: &ResNetConfig) -> serde_json::Value {
    let classes = config.num_classes.unwrap_or(0).max(0);
    serde_json::json!({
        "architecture": depth.name(),
        "num_classes": classes,
        "num_features": 512 * depth.expansion(),
        "global_pool": "avg",
        "model_args": { "in_chans": config.in_channels },
        "pretrained_cfg": {
            "num_classes": classes,
            "first_conv": "conv1",
            "classifier": "fc",
            "custom_load": false,
        },
    })
}

/// transformers' `ResNetConfig` for this network: torchvision's ResNet is its v1.5 (the stride
/// in the 3×3 convolution, no downsampling in the first stage).
fn hf_config(depth: Depth, config: &ResNetConfig, class: &str) -> serde_json::Value {
    let expansion = depth.expansion();
    let hidden_sizes: Vec<i64> = (0..4).map(|s| (config.width << s) * expansion).collect();
    let mut c = serde_json::json!({
        "architectures": [class],
        "model_type": "resnet",
        "num_channels": config.in_channels,
        "embedding_size": config.width,
        "hidden_sizes": hidden_sizes,
        "depths": depth.layers(),
        "layer_type": if depth.bottleneck() { "bottleneck" } else { "basic" },
        "hidden_act": "relu",
        "downsample_in_first_stage": false,
        "downsample_in_bottleneck": false,
    });
    if let Some(n) = config.num_classes.filter(|n| *n > 0) {
        c["num_labels"] = n.into();
    }
    c
}

/// A torchvision name in transformers' ResNet (None: a tensor it has no place for).
fn hf_name(name: &str, head: bool) -> Option<String> {
    let backbone = if head { "resnet." } else { "" };
    if let Some(rest) = name.strip_prefix("fc.") {
        return head.then(|| format!("classifier.1.{rest}"));
    }
    if let Some(rest) = name.strip_prefix("conv1.") {
        return Some(format!("{backbone}embedder.embedder.convolution.{rest}"));
    }
    if let Some(rest) = name.strip_prefix("bn1.") {
        return Some(format!("{backbone}embedder.embedder.normalization.{rest}"));
    }
    // layer{s}.{b}.{part}.{tensor}
    let mut parts = name.splitn(4, '.');
    let stage: usize = parts.next()?.strip_prefix("layer")?.parse().ok()?;
    let block: usize = parts.next()?.parse().ok()?;
    let (part, rest) = (parts.next()?, parts.next()?);
    let at = format!("{backbone}encoder.stages.{}.layers.{block}", stage.checked_sub(1)?);
    let mapped = match part {
        "downsample" => match rest.split_once('.')? {
            ("0", t) => format!("shortcut.convolution.{t}"),
            ("1", t) => format!("shortcut.normalization.{t}"),
            _ => return None,
        },
        _ => {
            let (kind, n) = match part.strip_prefix("conv") {
                Some(n) => ("convolution", n),
                None => ("normalization", part.strip_prefix("bn")?),
            };
            format!("layer.{}.{kind}.{rest}", n.parse::<usize>().ok()?.checked_sub(1)?)
        }
    };
    Some(format!("{at}.{mapped}"))
}

#[cfg(test)]
mod tests {
    use super::hf_name;

    #[test]
    fn torchvision_names_map_to_transformers() {
        assert_eq!(hf_name("conv1.weight", true).unwrap(), "resnet.embedder.embedder.convolution.weight");
        assert_eq!(hf_name("bn1.running_var", false).unwrap(), "embedder.embedder.normalization.running_var");
        assert_eq!(
            hf_name("layer2.0.downsample.1.weight", true).unwrap(),
            "resnet.encoder.stages.1.layers.0.shortcut.normalization.weight"
        );
        assert_eq!(
            hf_name("layer4.1.conv2.weight", false).unwrap(),
            "encoder.stages.3.layers.1.layer.1.convolution.weight"
        );
        assert_eq!(
            hf_name("layer1.2.bn3.bias", false).unwrap(),
            "encoder.stages.0.layers.2.layer.2.normalization.bias"
        );
        assert_eq!(hf_name("fc.weight", true).unwrap(), "classifier.1.weight");
        assert!(hf_name("fc.weight", false).is_none());
        assert!(hf_name("layer1.0.se.weight", true).is_none());
    }
}
