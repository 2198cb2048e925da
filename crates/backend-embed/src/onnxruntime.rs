//! The ONNX Runtime engine: the same BERT encoder as an ONNX graph
//! (`model.onnx`, written from the safetensors by scripts/fetch-models), run by
//! ONNX Runtime's fused CPU kernels through the `ort` crate.
//!
//! ONNX Runtime is loaded at run time (`ort`'s `load-dynamic`) from the shared
//! library that the `onnxruntime` PyPI wheel ships: `ort`'s default build
//! downloads binaries from a CDN, which offline builds cannot reach, and a
//! server without the library still serves every other model.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

/// The environment and the library it came from. `ort` allows one per
/// process, so the first library that loads is the one every model uses; a
/// failed attempt is not kept, so running scripts/fetch-models and loading the
/// model again works without a restart.
static RUNTIME: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

fn runtime(library: &Path) -> Result<Environment, String> {
    let mut runtime = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((loaded, env)) = runtime.as_ref() {
        return if loaded == library {
            Ok(env.clone())
        } else {
            Err(format!(
                "ONNX Runtime is already loaded from {}; one library serves the whole process",
                loaded.display()
            ))
        };
    }
    if !library.is_file() {
        return Err(format!(
            "ONNX Runtime's library {} is missing: run scripts/fetch-models, or point --onnxruntime-lib at a libonnxruntime.so",
            library.display()
        ));
    }
    let env = ort::init_from(library)
        .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", library.display()))?
        .with_name("inferd")
        .with_telemetry(false)
        .build()
        .map_err(|e| format!("ONNX Runtime from {}: {e}", library.display()))?;
    *runtime = Some((library.to_path_buf(), env.clone()));
    Ok(env)
}

/// One session of the encoder graph. `Session::run` takes `&mut self`; the
/// model's worker runs one batch at a time, so the lock is never contended.
pub(crate) struct OrtEncoder {
    session: Mutex<Session>,
}

impl OrtEncoder {
    /// `threads`: ONNX Runtime's intra-op pool (one session per model, so the
    /// pool is the model's).
    pub(crate) fn load(library: &Path, graph: &Path, threads: usize) -> Result<Self, String> {
        let env = runtime(library)?;
        fn options<R>(e: ort::Error<R>) -> String {
            format!("ONNX Runtime session options: {e}")
        }
        let session = Session::builder(&env)
            .map_err(options)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(options)?
            .with_intra_threads(threads)
            .map_err(options)?
            .commit_from_file(graph)
            .map_err(|e| format!("{}: {e}", graph.display()))?;
        let names = |outlets: &[ort::value::Outlet]| -> Vec<String> {
            outlets.iter().map(|o| o.name().to_string()).collect()
        };
        let (inputs, outputs) = (names(session.inputs()), names(session.outputs()));
        if inputs != ["input_ids", "attention_mask"] || outputs != ["last_hidden_state"] {
            return Err(format!(
                "{} takes {inputs:?} and gives {outputs:?}; an encoder graph takes \
                 [\"input_ids\", \"attention_mask\"] and gives [\"last_hidden_state\"]",
                graph.display()
            ));
        }
        Ok(OrtEncoder {
            session: Mutex::new(session),
        })
    }

    /// Runs `ids` and `mask` [n, len] and hands the token states [n, len,
    /// hidden], flat, to `pool` in ONNX Runtime's own output buffer.
    pub(crate) fn forward(
        &self,
        ids: &[i64],
        mask: &[i64],
        n: usize,
        len: usize,
        pool: &mut dyn FnMut(&[f32]),
    ) -> Result<(), String> {
        let shape = [n, len];
        let err = |e: ort::Error| e.to_string();
        let ids = TensorRef::from_array_view((shape, ids)).map_err(err)?;
        let mask = TensorRef::from_array_view((shape, mask)).map_err(err)?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session
            .run(ort::inputs!["input_ids" => ids, "attention_mask" => mask])
            .map_err(err)?;
        let (_, states) = outputs["last_hidden_state"]
            .try_extract_tensor::<f32>()
            .map_err(err)?;
        pool(states);
        Ok(())
    }
}
