//! What a Rust test does when something it needs is not on this machine (the
//! Python clients in .venv, a model's fetched weights): skip with a printed
//! reason on a developer's machine, fail under CI (`CI` set and not empty), where
//! scripts/test has set everything up and a skip could only hide a broken setup.
//! Each test crate includes this one file with `#[path]`.

/// Prints `SKIPPED: {what}` and returns, so the caller can return early; under
/// CI it panics with `what` instead.
pub fn missing(what: &str) {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    assert!(!ci, "{what} (CI is set, so this fails instead of skipping)");
    eprintln!("SKIPPED: {what}");
}
