//! The `[parameters]` of a remote model, read and checked once at load. Reading
//! them never contacts the remote: a server that is down makes requests fail,
//! not the load.

use std::fmt;
use std::time::Duration;

use inferd_core::LoadSpec;

use crate::Kind;

/// A key sent as `Authorization: Bearer`; kept out of `Debug` output so it
/// never reaches a log.
#[derive(Clone)]
pub struct ApiKey(pub String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The server root (TGI, Ollama) or the OpenAI base with its `/v1`; no
    /// trailing slash.
    pub endpoint: String,
    /// The remote's name for the model.
    pub model: Option<String>,
    pub served_name: String,
    pub api_key: Option<ApiKey>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_concurrent: usize,
    pub max_input_tokens: u32,
    pub max_total_tokens: u32,
}

impl Settings {
    /// Reads the parameters, with `env` standing for the process environment
    /// (tests pass their own). Every error is a sentence naming the key.
    pub fn read(
        kind: Kind,
        spec: &LoadSpec<'_>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, String> {
        let text = |key: &str| {
            spec.config
                .parameters
                .get(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let endpoint = text("endpoint").ok_or_else(|| {
            format!(
                "model.toml: parameters.endpoint is required (for example {})",
                kind.example_endpoint()
            )
        })?;
        let endpoint = check_endpoint(&endpoint)?;
        let model = text("model");
        if model.is_none() && kind != Kind::Tgi {
            return Err(format!(
                "model.toml: parameters.model is required: the name the {} server knows the model by",
                kind.name()
            ));
        }
        let served_name = text("served_name")
            .or_else(|| model.clone())
            .unwrap_or_else(|| spec.name.to_owned());
        let api_key = match text("api_key_env") {
            None => None,
            Some(var) => match env(&var).filter(|k| !k.is_empty()) {
                Some(key) => Some(ApiKey(key)),
                None => {
                    return Err(format!(
                        "model.toml: parameters.api_key_env names the environment variable {var}, which is not set"
                    ))
                }
            },
        };
        let s = Settings {
            endpoint,
            model,
            served_name,
            api_key,
            timeout: Duration::from_millis(spec.config.param("timeout_ms", 60_000)?),
            connect_timeout: Duration::from_millis(spec.config.param("connect_timeout_ms", 2_000)?),
            max_concurrent: spec.config.param("max_concurrent", 64)?,
            max_input_tokens: spec.config.param("max_input_tokens", 4096)?,
            max_total_tokens: spec.config.param("max_total_tokens", 8192)?,
        };
        if s.timeout.is_zero() || s.connect_timeout.is_zero() {
            return Err("model.toml: timeout_ms and connect_timeout_ms must be above 0".into());
        }
        if s.max_concurrent == 0 {
            return Err("model.toml: parameters.max_concurrent must be at least 1".into());
        }
        if s.max_input_tokens == 0 || s.max_input_tokens >= s.max_total_tokens {
            return Err(
                "model.toml: max_input_tokens must be above 0 and below max_total_tokens".into(),
            );
        }
        Ok(s)
    }
}

/// An http(s) URL with a host; the trailing slash is dropped so routes can be
/// appended.
fn check_endpoint(endpoint: &str) -> Result<String, String> {
    let bad = |why: &str| format!("model.toml: parameters.endpoint = '{endpoint}' {why}");
    let url = reqwest::Url::parse(endpoint).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("must be an http:// or https:// URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    Ok(endpoint.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use inferd_core::ModelConfig;

    use super::*;

    fn read(kind: Kind, params: &str) -> Result<Settings, String> {
        let config = ModelConfig::from_toml(&format!(
            "backend = \"{}\"\n[parameters]\n{params}",
            kind.name()
        ))?;
        let spec = LoadSpec {
            name: "chat",
            version: 1,
            model_dir: Path::new("/nonexistent"),
            version_dir: Path::new("/nonexistent/1"),
            config: &config,
        };
        Settings::read(kind, &spec, |var| (var == "KEY").then(|| "sk-1".to_owned()))
    }

    #[test]
    fn defaults_and_names() {
        let s = read(Kind::Tgi, "endpoint = 'http://tgi:3000/'").unwrap();
        assert_eq!(s.endpoint, "http://tgi:3000");
        assert_eq!((s.model, s.served_name.as_str()), (None, "chat"));
        assert_eq!(s.timeout, Duration::from_secs(60));
        assert_eq!(s.connect_timeout, Duration::from_secs(2));
        assert_eq!(
            (s.max_concurrent, s.max_input_tokens, s.max_total_tokens),
            (64, 4096, 8192)
        );

        let s = read(Kind::OpenAi, "endpoint = 'http://h/v1'\nmodel = 'qwen'").unwrap();
        assert_eq!(
            (s.model.as_deref(), s.served_name.as_str()),
            (Some("qwen"), "qwen")
        );
        let s = read(
            Kind::Ollama,
            "endpoint = 'http://h'\nmodel = 'llama3:8b'\nserved_name = 'Llama 3'\ntimeout_ms = 5000",
        )
        .unwrap();
        assert_eq!(s.served_name, "Llama 3");
        assert_eq!(s.timeout, Duration::from_secs(5));
    }

    #[test]
    fn the_api_key_comes_from_the_named_variable_and_is_redacted() {
        let s = read(
            Kind::OpenAi,
            "endpoint = 'https://api/v1'\nmodel = 'm'\napi_key_env = 'KEY'",
        )
        .unwrap();
        assert_eq!(s.api_key.as_ref().map(|k| k.0.as_str()), Some("sk-1"));
        assert!(!format!("{s:?}").contains("sk-1"));
        let e = read(
            Kind::OpenAi,
            "endpoint = 'https://api/v1'\nmodel = 'm'\napi_key_env = 'NOPE'",
        )
        .unwrap_err();
        assert!(e.contains("NOPE") && e.contains("not set"), "{e}");
    }

    #[test]
    fn broken_parameters_are_refused_with_the_key() {
        for (kind, params, needle) in [
            (Kind::Tgi, "", "endpoint is required"),
            (Kind::Tgi, "endpoint = 'tgi:3000'", "http"),
            (Kind::Tgi, "endpoint = 'ftp://h'", "http"),
            (
                Kind::OpenAi,
                "endpoint = 'http://h/v1'",
                "model is required",
            ),
            (Kind::Ollama, "endpoint = 'http://h'", "model is required"),
            (
                Kind::Tgi,
                "endpoint = 'http://h'\nmax_concurrent = '0'",
                "max_concurrent",
            ),
            (
                Kind::Tgi,
                "endpoint = 'http://h'\ntimeout_ms = 'soon'",
                "timeout_ms",
            ),
            (
                Kind::Tgi,
                "endpoint = 'http://h'\nmax_input_tokens = '9000'",
                "max_input_tokens",
            ),
        ] {
            let e = read(kind, params).unwrap_err();
            assert!(e.contains(needle), "{params}: {e}");
        }
    }
}
