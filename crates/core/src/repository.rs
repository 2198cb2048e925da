//! Reads the model repository: `<root>/<name>/model.toml` plus integer version
//! folders. Problems are per model: a broken folder becomes an unavailable model
//! with a reason, never a failed start.

use std::fs;
use std::path::{Path, PathBuf};

use crate::config::ModelConfig;
use crate::error::{CoreError, CoreResult};

/// One model folder as found on disk.
#[derive(Debug, Clone)]
pub struct RepoModel {
    pub name: String,
    pub dir: PathBuf,
    /// The parsed configuration, or why the folder cannot be served.
    pub config: Result<ModelConfig, String>,
    /// The versions the version policy serves, ascending.
    pub versions: Vec<u64>,
}

/// A version as the V2 protocols spell it in paths and messages: an integer,
/// or empty / `-1` for "the version policy's choice", as Triton reads them.
pub fn requested_version(model: &str, text: &str) -> CoreResult<Option<u64>> {
    match text {
        "" | "-1" => Ok(None),
        v => v.parse().map(Some).map_err(|_| CoreError::VersionNotFound {
            model: model.into(),
            version: v.into(),
        }),
    }
}

/// Refuses Triton's load parameters that would replace the model's files
/// (`config`, `file:<version>/<name>`): models load only from their folder.
pub fn check_load_parameters<'a>(keys: impl IntoIterator<Item = &'a String>) -> CoreResult<()> {
    match keys
        .into_iter()
        .find(|k| *k == "config" || k.starts_with("file:"))
    {
        Some(key) => Err(CoreError::UnsupportedLoadParameter { key: key.clone() }),
        None => Ok(()),
    }
}

/// Lists the model folders under `root`, sorted by name. Fails only when the root
/// itself cannot be read.
pub fn scan(root: &Path) -> std::io::Result<Vec<RepoModel>> {
    let mut models = Vec::new();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        models.push(read_model(root, &name));
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

/// Reads one model folder. A name that is not a plain folder name is refused, so
/// load requests can never reach outside the repository.
pub fn read_model(root: &Path, name: &str) -> RepoModel {
    let dir = root.join(name);
    let config = if !is_plain_name(name) {
        Err(format!("'{name}' is not a valid model name"))
    } else {
        read_config(&dir)
    };
    let mut versions = Vec::new();
    let config = config.and_then(|config| {
        let available = version_dirs(&dir);
        let available = if available.is_empty() && config.backend == "builtin" {
            vec![1]
        } else {
            available
        };
        if available.is_empty() {
            return Err("no version folders (expected <model>/<integer>/...)".to_string());
        }
        let mut config = config;
        if let Some(file) = &config.labels {
            let text = fs::read_to_string(dir.join(file))
                .map_err(|e| format!("labels file '{file}' cannot be read: {e}"))?;
            config.label_names = text.lines().map(str::to_string).collect();
        }
        versions = config.version_policy.select(&available);
        if versions.is_empty() {
            return Err(format!(
                "version_policy selects none of the versions on disk {available:?}"
            ));
        }
        Ok(config)
    });
    RepoModel {
        name: name.to_string(),
        dir,
        config,
        versions,
    }
}

/// Whether `name` can only ever name a folder directly inside the repository.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn read_config(dir: &Path) -> Result<ModelConfig, String> {
    if !dir.is_dir() {
        return Err("no such model folder in the repository".into());
    }
    let path = dir.join("model.toml");
    match fs::read_to_string(&path) {
        Ok(text) => ModelConfig::from_toml(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => auto_config(dir),
        Err(e) => Err(format!("cannot read model.toml: {e}")),
    }
}

/// Triton's auto-complete, widened to every bare model this build runs: a
/// folder without model.toml whose version folders hold a sentence-transformers
/// export (candle embeddings), a `model.onnx` (inputs and outputs read from the
/// graph) or a `.gguf` (llama.cpp). A KServe `--model_dir` is served through
/// this. The export is recognised first: one may also hold a `model.onnx` of
/// its encoder (as `scripts/fetch-models` writes beside MiniLM's weights), and
/// that graph alone is no tensor model.
fn auto_config(dir: &Path) -> Result<ModelConfig, String> {
    const EMBEDDER: [&str; 3] = ["model.safetensors", "config.json", "tokenizer.json"];
    let versions: Vec<_> = version_dirs(dir)
        .iter()
        .map(|v| dir.join(v.to_string()))
        .collect();
    let any = |test: &dyn Fn(&Path) -> bool| versions.iter().any(|v| test(v));
    let text = if any(&|v| EMBEDDER.iter().all(|f| v.join(f).is_file())) {
        "backend = \"candle\"\ntask = \"feature-extraction\"\nmax_batch_size = 32\nmax_queue_delay_ms = 2\n"
    } else if any(&|v| v.join("model.onnx").is_file()) {
        "backend = \"onnx\"\n"
    } else if any(&|v| {
        fs::read_dir(v)
            .into_iter()
            .flatten()
            .flatten()
            .any(|f| f.path().extension().is_some_and(|x| x == "gguf"))
    }) {
        "backend = \"llama.cpp\"\n"
    } else {
        return Err(
            "no model.toml, and no version folder holds a model.onnx, a .gguf or a \
             sentence-transformers export (model.safetensors, config.json, tokenizer.json)"
                .into(),
        );
    };
    ModelConfig::from_toml(text)
}

fn version_dirs(dir: &Path) -> Vec<u64> {
    let mut versions: Vec<u64> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    versions
}

/// The summed size of the files in a folder: the memory estimate for a model
/// before it is loaded.
pub fn folder_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                folder_bytes(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("inferd-repo-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn bare_models_of_every_kind_are_completed() {
        let root = tmp("bare");
        fs::create_dir_all(root.join("llm/1")).unwrap();
        fs::write(root.join("llm/1/tiny.Q4_0.gguf"), b"x").unwrap();
        fs::create_dir_all(root.join("embedder/1")).unwrap();
        // With its encoder's graph beside it, as scripts/fetch-models leaves MiniLM.
        for f in [
            "model.safetensors",
            "config.json",
            "tokenizer.json",
            "model.onnx",
        ] {
            fs::write(root.join("embedder/1").join(f), b"{}").unwrap();
        }
        fs::create_dir_all(root.join("half/1")).unwrap();
        fs::write(root.join("half/1/config.json"), b"{}").unwrap();
        let models = scan(&root).unwrap();
        let config = |i: usize| models[i].config.as_ref();
        assert_eq!(models[0].name, "embedder");
        assert_eq!(config(0).unwrap().backend, "candle");
        assert_eq!(
            config(0).unwrap().task.as_deref(),
            Some("feature-extraction")
        );
        assert!(config(1).unwrap_err().contains("sentence-transformers"));
        assert_eq!(config(2).unwrap().backend, "llama.cpp");
    }

    #[test]
    fn reads_versions_policy_and_problems() {
        let root = tmp("scan");
        fs::create_dir_all(root.join("a/1")).unwrap();
        fs::create_dir_all(root.join("a/3")).unwrap();
        fs::write(
            root.join("a/model.toml"),
            "backend = 'onnx'\n[version_policy]\nall = true",
        )
        .unwrap();
        fs::create_dir_all(root.join("b/2")).unwrap();
        fs::write(root.join("b/2/model.onnx"), b"x").unwrap();
        fs::create_dir_all(root.join("broken")).unwrap();
        fs::write(root.join("broken/model.toml"), "max_batch_size = 'lots'").unwrap();
        fs::create_dir_all(root.join("empty")).unwrap();
        fs::create_dir_all(root.join("builtin")).unwrap();
        fs::write(
            root.join("builtin/model.toml"),
            "backend = 'builtin'\nkind = 'identity'",
        )
        .unwrap();

        let models = scan(&root).unwrap();
        let names: Vec<_> = models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "broken", "builtin", "empty"]);
        assert_eq!(models[0].versions, vec![1, 3]);
        assert_eq!(models[1].versions, vec![2]);
        assert_eq!(models[1].config.as_ref().unwrap().backend, "onnx");
        assert!(models[2]
            .config
            .as_ref()
            .unwrap_err()
            .contains("model.toml"));
        assert_eq!(models[3].versions, vec![1]);
        assert!(models[4]
            .config
            .as_ref()
            .unwrap_err()
            .contains("no model.toml"));
        assert!(read_model(&root, "../etc").config.is_err());
        let _ = fs::remove_dir_all(&root);
    }
}
