//! Turning token states into one sentence vector: sentence-transformers'
//! Pooling (mean over real tokens) and Normalize (unit L2 norm) modules, and
//! the check that a model's `pooling.json` asks for nothing else.

use serde::Deserialize;

/// sentence-transformers' `1_Pooling/config.json`. Unknown keys are ignored:
/// newer versions add modes, and any mode set to true is refused below only if
/// it is one we know we do not do.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PoolingConfig {
    word_embedding_dimension: Option<usize>,
    pooling_mode_mean_tokens: bool,
    pooling_mode_cls_token: bool,
    pooling_mode_max_tokens: bool,
    pooling_mode_mean_sqrt_len_tokens: bool,
    pooling_mode_weightedmean_tokens: bool,
    pooling_mode_lasttoken: bool,
}

/// Accepts mean pooling alone over vectors of the model's hidden size; any
/// other mode would give vectors unlike the model's reference ones.
pub(crate) fn check(p: &PoolingConfig, hidden: usize) -> std::result::Result<(), String> {
    let others = [
        ("cls_token", p.pooling_mode_cls_token),
        ("max_tokens", p.pooling_mode_max_tokens),
        ("mean_sqrt_len_tokens", p.pooling_mode_mean_sqrt_len_tokens),
        ("weightedmean_tokens", p.pooling_mode_weightedmean_tokens),
        ("lasttoken", p.pooling_mode_lasttoken),
    ];
    let asked: Vec<&str> = others.iter().filter(|m| m.1).map(|m| m.0).collect();
    if !p.pooling_mode_mean_tokens || !asked.is_empty() {
        return Err(format!(
            "pooling.json asks for pooling {asked:?} (mean_tokens: {}); this backend does mean pooling only",
            p.pooling_mode_mean_tokens
        ));
    }
    match p.word_embedding_dimension {
        Some(d) if d != hidden => Err(format!(
            "pooling.json says the vectors have {d} dimensions, config.json says hidden_size {hidden}"
        )),
        _ => Ok(()),
    }
}

/// One text's token states `states` [len, hidden] and its `mask` [len] (1 =
/// real token, 0 = padding) → `out` [hidden]: the mean of the real token
/// states, scaled to unit length. Padding is skipped, so it cannot leak into
/// the vector. The clamps are sentence-transformers' own (1e-9 on the count,
/// 1e-12 on the norm).
pub(crate) fn mean_pool_normalize(states: &[f32], mask: &[i64], out: &mut [f32]) {
    let hidden = out.len();
    out.fill(0.0);
    let mut count = 0.0f32;
    for (token, _) in states
        .chunks_exact(hidden)
        .zip(mask)
        .filter(|(_, &m)| m != 0)
    {
        for (o, s) in out.iter_mut().zip(token) {
            *o += s;
        }
        count += 1.0;
    }
    let count = count.max(1e-9);
    let norm = out
        .iter()
        .map(|x| (x / count) * (x / count))
        .sum::<f32>()
        .sqrt();
    let scale = 1.0 / (count * norm.max(1e-12));
    for o in out.iter_mut() {
        *o *= scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(states: &[f32], mask: &[i64], hidden: usize) -> Vec<f32> {
        let mut out = vec![f32::NAN; hidden];
        mean_pool_normalize(states, mask, &mut out);
        out
    }

    #[test]
    fn padding_is_left_out_of_the_mean() {
        // Two real tokens and a huge padded one.
        let states = [3.0f32, 0.0, 1.0, 0.0, 1e6, -1e6];
        assert_eq!(pool(&states, &[1, 1, 0], 2), [1.0, 0.0]);
        assert_eq!(pool(&[0.0, 2.0, 0.0, 2.0], &[1, 1], 2), [0.0, 1.0]);
    }

    #[test]
    fn a_zero_vector_stays_finite() {
        assert_eq!(pool(&[0.0; 6], &[1, 1], 3), [0.0; 3]);
    }

    fn parse(json: &str) -> PoolingConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn only_mean_pooling_of_the_right_size_is_accepted() {
        let mean = r#"{"word_embedding_dimension": 384, "pooling_mode_mean_tokens": true,
            "pooling_mode_cls_token": false, "include_prompt": true}"#;
        assert_eq!(check(&parse(mean), 384), Ok(()));
        assert!(check(&parse(mean), 768).unwrap_err().contains("768"));
        let cls = r#"{"pooling_mode_cls_token": true}"#;
        assert!(check(&parse(cls), 384).unwrap_err().contains("cls_token"));
    }
}
