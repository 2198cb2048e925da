//! A model's configuration (`model.toml`) and the tensor specs it declares. Parsed
//! once into typed values; a broken file becomes a reason the model is unavailable.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{CoreError, CoreResult};
use crate::generate::{default_scenarios, Scenario, TEXT_BACKENDS, TEXT_GENERATION};
use crate::tensor::{DataType, Tensor};

/// Declared datatype of a tensor spec: one protocol type, or any (identity-like
/// models that pass every type through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecType {
    Any,
    Is(DataType),
}

impl SpecType {
    pub fn as_str(self) -> &'static str {
        match self {
            SpecType::Any => "ANY",
            SpecType::Is(d) => d.as_str(),
        }
    }
}

/// A model input or output: name, datatype and shape (`-1` = any size). A spec
/// without a shape accepts every rank.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: SpecType,
    pub shape: Option<Vec<i64>>,
}

impl TensorSpec {
    /// The shape reported in metadata (`[-1]` stands for "any rank").
    pub fn shape_or_any(&self) -> Vec<i64> {
        self.shape.clone().unwrap_or_else(|| vec![-1])
    }

    /// Checks a request tensor against this spec.
    pub fn check(&self, model: &str, t: &Tensor) -> CoreResult<()> {
        if let SpecType::Is(expected) = self.datatype {
            if t.datatype() != expected {
                return Err(CoreError::WrongDatatype {
                    model: model.into(),
                    input: self.name.clone(),
                    expected,
                    got: t.datatype(),
                });
            }
        }
        if let Some(shape) = &self.shape {
            let fits = shape.len() == t.shape().len()
                && shape
                    .iter()
                    .zip(t.shape())
                    .all(|(&want, &got)| want < 0 || want as usize == got);
            if !fits {
                return Err(CoreError::WrongShape {
                    model: model.into(),
                    input: self.name.clone(),
                    expected: shape.clone(),
                    got: t.shape().to_vec(),
                });
            }
        }
        Ok(())
    }
}

/// How an image is turned into a model input: decoded, converted to gray or
/// RGB, resized, optionally inverted (dark ink on light paper → the bright ink
/// models trained on scanned digits expect), scaled from 0..255 to 0..`scale`,
/// and laid out flat or as NCHW / NHWC with a leading batch dimension.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub channels: Channels,
    #[serde(default)]
    pub invert: bool,
    #[serde(default = "one")]
    pub scale: f32,
    #[serde(default)]
    pub layout: Layout,
    /// The output holding the class scores (default: the first output).
    pub output: Option<String>,
}

fn one() -> f32 {
    1.0
}

impl ImageSpec {
    /// Floats one preprocessed image takes in the input tensor.
    pub fn elements_per_image(&self) -> usize {
        (self.width as usize)
            .saturating_mul(self.height as usize)
            .saturating_mul(self.channels.count())
    }
}

impl Channels {
    pub fn count(self) -> usize {
        match self {
            Channels::Gray => 1,
            Channels::Rgb => 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channels {
    #[default]
    Gray,
    Rgb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[N, height * width * channels]`.
    #[default]
    Flat,
    Nchw,
    Nhwc,
}

impl ImageSpec {
    fn validate(&self) -> Result<(), String> {
        if self.width == 0 || self.height == 0 || self.width > 4096 || self.height > 4096 {
            return Err("model.toml: [image] width and height must be 1..=4096".into());
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err("model.toml: [image] scale must be a positive number".into());
        }
        Ok(())
    }
}

/// Which versions of a model are served (Triton's `version_policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPolicy {
    Latest(usize),
    All,
    Specific(Vec<u64>),
}

impl VersionPolicy {
    /// The served subset of `available` (ascending).
    pub fn select(&self, available: &[u64]) -> Vec<u64> {
        match self {
            VersionPolicy::All => available.to_vec(),
            VersionPolicy::Latest(n) => available[available.len().saturating_sub(*n)..].to_vec(),
            VersionPolicy::Specific(wanted) => available
                .iter()
                .copied()
                .filter(|v| wanted.contains(v))
                .collect(),
        }
    }
}

/// Everything `model.toml` says, validated.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub backend: String,
    pub platform: String,
    /// 0: the model does not batch; > 0: requests are joined along dimension 0 up
    /// to this many rows.
    pub max_batch_size: usize,
    pub max_queue_delay: Duration,
    pub max_queue: usize,
    pub instances: usize,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub labels: Option<String>,
    /// The labels file's lines, read with the folder (index = class).
    pub label_names: Vec<String>,
    /// How images become this model's input, for the image-classification task.
    pub image: Option<ImageSpec>,
    /// A task the model serves beyond `tensors` (`feature-extraction` for a
    /// model that takes a BYTES `text` input and gives FP32 vectors).
    pub task: Option<String>,
    pub version_policy: VersionPolicy,
    /// Backend-specific keys (such as `kind` for builtin models), kept as text.
    pub parameters: BTreeMap<String, String>,
    /// Seed 002's prompt templates for text models: the built-in `qa`,
    /// `summarize` and `rewrite`, with `[scenarios.NAME]` tables added or
    /// overriding them.
    pub scenarios: BTreeMap<String, Scenario>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            backend: "onnx".into(),
            platform: String::new(),
            max_batch_size: 0,
            max_queue_delay: Duration::ZERO,
            max_queue: DEFAULT_MAX_QUEUE,
            instances: 1,
            inputs: Vec::new(),
            outputs: Vec::new(),
            labels: None,
            label_names: Vec::new(),
            image: None,
            task: None,
            version_policy: VersionPolicy::Latest(1),
            parameters: BTreeMap::new(),
            scenarios: BTreeMap::new(),
        }
    }
}

pub const DEFAULT_MAX_QUEUE: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    backend: Option<String>,
    platform: Option<String>,
    max_batch_size: Option<usize>,
    max_queue_delay_ms: Option<u64>,
    max_queue: Option<usize>,
    instances: Option<usize>,
    labels: Option<String>,
    kind: Option<String>,
    task: Option<String>,
    image: Option<ImageSpec>,
    #[serde(default)]
    input: Vec<RawSpec>,
    #[serde(default)]
    output: Vec<RawSpec>,
    version_policy: Option<RawPolicy>,
    #[serde(default)]
    parameters: BTreeMap<String, toml::Value>,
    #[serde(default)]
    scenarios: BTreeMap<String, Scenario>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    datatype: String,
    shape: Option<Vec<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    latest: Option<usize>,
    all: Option<bool>,
    specific: Option<Vec<u64>>,
}

impl ModelConfig {
    /// A backend's `[parameters]` key parsed as `T`, or `default` when absent;
    /// the error is a sentence naming the key.
    pub fn param<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.parameters.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("model.toml: parameters.{key} = '{v}' is not a valid value")),
        }
    }

    /// Parses `model.toml` text; the error is a sentence fit for the repository
    /// index's `reason`.
    pub fn from_toml(text: &str) -> Result<ModelConfig, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_reason(text, &e))?;
        let mut config = ModelConfig::default();
        if let Some(b) = raw.backend {
            config.backend = b;
        }
        config.platform = raw
            .platform
            .unwrap_or_else(|| match config.backend.as_str() {
                "onnx" => "onnx_onnxv1".into(),
                other => other.into(),
            });
        config.max_batch_size = raw.max_batch_size.unwrap_or(0);
        config.max_queue_delay = Duration::from_millis(raw.max_queue_delay_ms.unwrap_or(0));
        config.max_queue = raw.max_queue.unwrap_or(DEFAULT_MAX_QUEUE);
        if config.max_queue == 0 {
            return Err("model.toml: max_queue must be at least 1".into());
        }
        config.instances = raw.instances.unwrap_or(1);
        if config.instances == 0 {
            return Err("model.toml: instances must be at least 1".into());
        }
        config.labels = raw.labels;
        if let Some(image) = &raw.image {
            image.validate()?;
        }
        config.image = raw.image;
        if let Some(task) = &raw.task {
            if task != crate::manager::FEATURE_EXTRACTION && task != TEXT_GENERATION {
                return Err(format!(
                    "model.toml: task '{task}' is not one a model can declare; use '{}' or '{TEXT_GENERATION}'",
                    crate::manager::FEATURE_EXTRACTION
                ));
            }
        }
        config.task = raw.task;
        if TEXT_BACKENDS.contains(&config.backend.as_str()) {
            config.task = Some(TEXT_GENERATION.into());
        }
        if config.task.as_deref() == Some(TEXT_GENERATION) {
            config.scenarios = default_scenarios();
            for (name, s) in raw.scenarios {
                s.validate(&name)?;
                config.scenarios.insert(name, s);
            }
        } else if !raw.scenarios.is_empty() {
            return Err("model.toml: scenarios are only for text-generation models".into());
        }
        config.inputs = raw.input.into_iter().map(spec).collect::<Result<_, _>>()?;
        config.outputs = raw.output.into_iter().map(spec).collect::<Result<_, _>>()?;
        config.version_policy = match raw.version_policy {
            None => VersionPolicy::Latest(1),
            Some(RawPolicy { latest: Some(n), all: None, specific: None }) if n > 0 => VersionPolicy::Latest(n),
            Some(RawPolicy { latest: None, all: Some(true), specific: None }) => VersionPolicy::All,
            Some(RawPolicy { latest: None, all: None, specific: Some(v) }) if !v.is_empty() => VersionPolicy::Specific(v),
            Some(_) => {
                return Err("model.toml: version_policy takes exactly one of latest = N (N > 0), all = true, specific = [versions]".into())
            }
        };
        if let Some(kind) = raw.kind {
            config.parameters.insert("kind".into(), kind);
        }
        for (k, v) in raw.parameters {
            let text = match v {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            config.parameters.insert(k, text);
        }
        Ok(config)
    }
}

/// One line: the message and the text it is about (toml's own rendering spans
/// several lines, too many for a repository index's `reason`).
fn toml_reason(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return format!("model.toml: {}", e.message());
    };
    let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    format!(
        "model.toml line {line_no} (`{line}`): {}",
        e.message().trim()
    )
}

fn spec(raw: RawSpec) -> Result<TensorSpec, String> {
    let datatype = if raw.datatype.eq_ignore_ascii_case("ANY") {
        SpecType::Any
    } else {
        SpecType::Is(DataType::parse(&raw.datatype).map_err(|e| format!("model.toml: {e}"))?)
    };
    if let Some(shape) = &raw.shape {
        if shape.iter().any(|&d| d < -1) {
            return Err(format!(
                "model.toml: tensor '{}' has a dimension below -1",
                raw.name
            ));
        }
    }
    Ok(TensorSpec {
        name: raw.name,
        datatype,
        shape: raw.shape,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_config() {
        let c = ModelConfig::from_toml(
            r#"
            backend = "onnx"
            max_batch_size = 8
            max_queue_delay_ms = 3
            instances = 2
            [[input]]
            name = "x"
            datatype = "FP32"
            shape = [-1, 4]
            [version_policy]
            latest = 2
            "#,
        )
        .unwrap();
        assert_eq!(c.max_batch_size, 8);
        assert_eq!(c.max_queue_delay, Duration::from_millis(3));
        assert_eq!(c.instances, 2);
        assert_eq!(c.platform, "onnx_onnxv1");
        assert_eq!(c.inputs[0].shape, Some(vec![-1, 4]));
        assert_eq!(c.version_policy, VersionPolicy::Latest(2));
    }

    #[test]
    fn broken_configs_give_a_reason() {
        assert!(ModelConfig::from_toml("backend = ")
            .unwrap_err()
            .contains("model.toml"));
        assert!(ModelConfig::from_toml("bogus = 1")
            .unwrap_err()
            .contains("bogus"));
        let e = ModelConfig::from_toml("[[input]]\nname='x'\ndatatype='FP8'").unwrap_err();
        assert!(e.contains("FP8"), "{e}");
        let e = ModelConfig::from_toml("[version_policy]\nlatest = 1\nall = true").unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
    }

    #[test]
    fn version_policy_selects() {
        let v = [1, 2, 5];
        assert_eq!(VersionPolicy::Latest(1).select(&v), vec![5]);
        assert_eq!(VersionPolicy::Latest(9).select(&v), vec![1, 2, 5]);
        assert_eq!(VersionPolicy::All.select(&v), vec![1, 2, 5]);
        assert_eq!(VersionPolicy::Specific(vec![2, 7]).select(&v), vec![2]);
    }
}
