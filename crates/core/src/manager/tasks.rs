//! Tasks over tensor models: what each model can do, and image classification
//! built on `infer` (decode and preprocess off the runtime, then the model's
//! queue, then top-k with the model's labels).

use std::time::Duration;

use super::{InferRequest, Manager, ModelInfo};
use crate::classify::{images_to_tensor, top_k, Label};
use crate::error::{CoreError, CoreResult};
use crate::generate::TEXT_GENERATION;
use crate::tensor::{Tensor, TensorData};

/// The tasks the core speaks, by their Hugging Face pipeline names.
pub const TENSORS: &str = "tensors";
pub const IMAGE_CLASSIFICATION: &str = "image-classification";
pub const FEATURE_EXTRACTION: &str = "feature-extraction";

impl ModelInfo {
    /// The tasks this model can serve.
    pub fn tasks(&self) -> Vec<&'static str> {
        let mut tasks = vec![TENSORS];
        if self.config.image.is_some() && self.inputs.len() == 1 {
            tasks.push(IMAGE_CLASSIFICATION);
        }
        match self.config.task.as_deref() {
            Some(FEATURE_EXTRACTION) => tasks.push(FEATURE_EXTRACTION),
            Some(TEXT_GENERATION) => tasks.push(TEXT_GENERATION),
            _ => {}
        }
        tasks
    }
}

impl Manager {
    /// Classifies images (PNG or JPEG bytes) with a model whose `model.toml`
    /// has an `[image]` section; returns the version used and the `k` best
    /// classes per image.
    pub async fn classify(
        &self,
        model: &str,
        version: Option<u64>,
        images: Vec<Vec<u8>>,
        k: usize,
        timeout: Option<Duration>,
    ) -> CoreResult<(u64, Vec<Vec<Label>>)> {
        let info = self.info(model, version)?;
        let unsupported = |reason: &str| CoreError::UnsupportedTask {
            model: model.into(),
            task: IMAGE_CLASSIFICATION.into(),
            reason: reason.into(),
        };
        let spec = info
            .config
            .image
            .clone()
            .ok_or_else(|| unsupported("its model.toml has no [image] section"))?;
        let [input] = info.inputs.as_slice() else {
            return Err(unsupported("it does not have exactly one input"));
        };
        if images.is_empty() {
            return Err(CoreError::BadRequest("no images given".into()));
        }
        // Counted and sized before a single pixel is decoded: the claim costs
        // nothing until the images prove to be what they say.
        let max_items = self.max_items(&info);
        if images.len() > max_items {
            return Err(CoreError::BadRequest(format!(
                "{} images given; model '{model}' takes at most {max_items} in one request",
                images.len()
            )));
        }
        let elements = spec.elements_per_image().saturating_mul(images.len());
        let max_elements = self.config().max_elements;
        if elements > max_elements {
            return Err(CoreError::TooManyElements {
                name: input.name.clone(),
                elements,
                max: max_elements,
            });
        }
        let _charge = self
            .inflight()
            .try_charge((elements * std::mem::size_of::<f32>()) as u64)?;
        let output = spec
            .output
            .clone()
            .or_else(|| info.outputs.first().map(|o| o.name.clone()))
            .ok_or_else(|| unsupported("it has no outputs"))?;
        let input_name = input.name.clone();
        let tensor =
            tokio::task::spawn_blocking(move || images_to_tensor(&spec, &input_name, &images))
                .await
                .map_err(|e| CoreError::Backend {
                    model: model.into(),
                    reason: format!("image decoding stopped: {e}"),
                })??;
        let res = self
            .infer(InferRequest {
                model: model.into(),
                version,
                inputs: vec![tensor],
                outputs: Some(vec![output]),
                timeout,
            })
            .await?;
        let labels = top_k(model, &res.outputs[0], &info.config.label_names, k)?;
        Ok((res.version, labels))
    }
}

/// Sentence vectors and the token count of each text.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub version: u64,
    pub vectors: Vec<Vec<f32>>,
    pub tokens: Vec<i64>,
}

impl Manager {
    /// Embeds texts with a model that declares `task = "feature-extraction"`
    /// (input `text` BYTES, outputs `embedding` FP32 [n, d] and optionally
    /// `tokens` INT64 [n]). Texts are sent in chunks of the model's batch size;
    /// the scheduler joins chunks of concurrent requests.
    pub async fn embed(
        &self,
        model: &str,
        texts: Vec<String>,
        timeout: Option<Duration>,
    ) -> CoreResult<Embeddings> {
        let info = self.info(model, None)?;
        if !info.tasks().contains(&FEATURE_EXTRACTION) {
            return Err(CoreError::UnsupportedTask {
                model: model.into(),
                task: FEATURE_EXTRACTION.into(),
                reason: "its model.toml does not declare task = \"feature-extraction\"".into(),
            });
        }
        if texts.is_empty() {
            return Err(CoreError::BadRequest("no texts given".into()));
        }
        // Texts are sent in chunks, so the model's batch size is no cap here.
        let max_items = self.config().max_batch_items;
        if texts.len() > max_items {
            return Err(CoreError::BadRequest(format!(
                "{} texts given; at most {max_items} may be embedded in one request",
                texts.len()
            )));
        }
        let chunk = info.config.max_batch_size.max(1);
        let mut out = Embeddings {
            version: info.version,
            vectors: Vec::with_capacity(texts.len()),
            tokens: Vec::with_capacity(texts.len()),
        };
        for part in texts.chunks(chunk) {
            let batch: Vec<Vec<u8>> = part.iter().map(|t| t.as_bytes().to_vec()).collect();
            let input = Tensor::new("text", vec![batch.len()], TensorData::Bytes(batch))?;
            let res = self
                .infer(InferRequest {
                    model: model.into(),
                    version: None,
                    inputs: vec![input],
                    outputs: None,
                    timeout,
                })
                .await?;
            out.version = res.version;
            let bad = |what: &str| CoreError::Backend {
                model: model.into(),
                reason: format!("its {what} output is missing or malformed"),
            };
            let vectors = res
                .outputs
                .iter()
                .find(|t| t.name == "embedding")
                .ok_or_else(|| bad("embedding"))?;
            let (TensorData::F32(values), [_, d]) = (vectors.data(), vectors.shape()) else {
                return Err(bad("embedding"));
            };
            out.vectors.extend(values.chunks(*d).map(<[f32]>::to_vec));
            match res
                .outputs
                .iter()
                .find(|t| t.name == "tokens")
                .map(|t| t.data())
            {
                Some(TensorData::I64(counts)) => out.tokens.extend(counts),
                _ => out.tokens.extend(std::iter::repeat_n(0, part.len())),
            }
        }
        Ok(out)
    }
}
