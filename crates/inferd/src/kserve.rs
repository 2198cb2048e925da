//! KServe's container contract: a `ServingRuntime` starts the container with
//! `--model_name`, `--model_dir` (where the storage initializer unpacked the
//! model, `/mnt/models`), `--http_port` and `--grpc_port`. The model there may
//! be bare (a `model.onnx`, a `.gguf`, a sentence-transformers export), one
//! model folder (with `model.toml`) or a whole repository; inferd serves any of
//! them through a repository of its own that names the model `--model_name`.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// KServe's default ports when a runtime starts inferd its way.
pub const HTTP_PORT: u16 = 8080;
pub const GRPC_PORT: u16 = 8081;

/// The name a model gets when the runtime gives none.
pub const DEFAULT_NAME: &str = "model";

/// The repository to serve `dir` from: `dir` itself when it already is one,
/// else a folder under `data_dir` that links `name` to it.
pub fn repository(name: &str, dir: &Path, data_dir: &Path) -> anyhow::Result<PathBuf> {
    if !inferd_core::repository::is_plain_name(name) {
        anyhow::bail!(
            "--model_name '{name}' cannot name a model: use letters, digits, '-', '_' and '.'"
        );
    }
    if !dir.is_dir() {
        anyhow::bail!("--model_dir {} is not a folder", dir.display());
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("reading --model_dir {}", dir.display()))?;
    if is_repository(&dir)? {
        tracing::info!(
            "--model_dir {} is a model repository: serving its models by their folder names",
            dir.display()
        );
        return Ok(dir);
    }
    let root = data_dir.join("kserve-repository");
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("clearing {}", root.display()))?;
    }
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let model = root.join(name);
    if dir.join("model.toml").is_file() || has_version_folders(&dir)? {
        // One model folder: its model.toml and versions as they are.
        std::os::unix::fs::symlink(&dir, &model)
    } else {
        // Bare files: they are version 1.
        std::fs::create_dir(&model).and_then(|()| std::os::unix::fs::symlink(&dir, model.join("1")))
    }
    .with_context(|| format!("linking {} to {}", model.display(), dir.display()))?;
    tracing::info!("serving --model_dir {} as model '{name}'", dir.display());
    Ok(root)
}

/// A folder whose subfolders are models: some hold a model.toml or integer
/// version folders.
fn is_repository(dir: &Path) -> anyhow::Result<bool> {
    for entry in read(dir)? {
        let path = entry.path();
        if path.is_dir()
            && entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u64>().is_err())
            && (path.join("model.toml").is_file() || has_version_folders(&path)?)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn has_version_folders(dir: &Path) -> anyhow::Result<bool> {
    Ok(read(dir)?.iter().any(|e| {
        e.path().is_dir()
            && e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u64>().is_ok())
    }))
}

fn read(dir: &Path) -> anyhow::Result<Vec<std::fs::DirEntry>> {
    std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("inferd-kserve-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn each_shape_of_model_dir_becomes_a_repository() {
        let data = tmp("data");
        // Bare files: version 1 of the named model.
        let bare = tmp("bare");
        std::fs::write(bare.join("model.onnx"), b"x").unwrap();
        let root = repository("flowers", &bare, &data).unwrap();
        assert!(root.join("flowers/1/model.onnx").is_file());
        // One model folder keeps its model.toml and versions.
        let folder = tmp("folder");
        std::fs::create_dir_all(folder.join("3")).unwrap();
        std::fs::write(folder.join("model.toml"), "backend = 'onnx'").unwrap();
        let root = repository("m", &folder, &data).unwrap();
        assert!(root.join("m/model.toml").is_file() && root.join("m/3").is_dir());
        assert!(
            !root.join("flowers").exists(),
            "the last run's link is gone"
        );
        // A repository is served as it is.
        let repo = tmp("repo");
        std::fs::create_dir_all(repo.join("iris/1")).unwrap();
        assert_eq!(
            repository("x", &repo, &data).unwrap(),
            repo.canonicalize().unwrap()
        );
        // Names that could leave the repository are refused.
        assert!(repository("../up", &bare, &data).is_err());
        assert!(repository("m", &bare.join("model.onnx"), &data).is_err());
    }
}
