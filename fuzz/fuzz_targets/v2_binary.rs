//! OIP V2's binary tensor extension through the real router: the split of the
//! body at `Inference-Header-Content-Length`, the `binary_data_size` slices,
//! the raw decoder, and Triton's raw form (a header of 0).
//!
//! Input: byte 0 picks the model, bytes 1..3 the header length (little
//! endian; 0xFFFF sends no header), the rest is the body.
#![no_main]

use inferd_fuzz::{assert_not_server_error, send};
use libfuzzer_sys::fuzz_target;

/// Models with typed inputs (raw form), any input, and two inputs.
const MODELS: &[&str] = &["identity", "rows", "text", "add_sub"];

fuzz_target!(|data: &[u8]| {
    let [pick, lo, hi, body @ ..] = data else {
        return;
    };
    let model = MODELS[*pick as usize % MODELS.len()];
    let route = format!("/v2/models/{model}/infer");
    let length = u16::from_le_bytes([*lo, *hi]);
    let mut headers = vec![("content-type", "application/octet-stream".to_string())];
    if length != u16::MAX {
        headers.push(("inference-header-content-length", length.to_string()));
    }
    let (status, answer) = send("POST", &route, &headers, body.to_vec());
    assert_not_server_error(&route, status, &answer);
});
