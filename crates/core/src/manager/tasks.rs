//! Tasks over tensor models: what each model can do, and image classification
//! built on `infer` (decode and preprocess off the runtime, then the model's
//! queue, then top-k with the model's labels).

use std::time::Duration;

use super::{InferRequest, Manager, ModelInfo};
use crate::classify::{images_to_tensor, top_k, Label};
use crate::error::{CoreError, CoreResult};

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
        if self.config.task.as_deref() == Some(FEATURE_EXTRACTION) {
            tasks.push(FEATURE_EXTRACTION);
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
