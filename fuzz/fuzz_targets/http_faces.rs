//! The request parsers of every face that takes a JSON body (seed 002's
//! gateway, TGI, OpenAI, `/inference`, KServe V1, Pinferencia, OIP V2), driven
//! through the real router. The first byte picks the route, the rest is the
//! body. No body may crash the server or earn a 5xx.
#![no_main]

use inferd_fuzz::{assert_not_server_error, send};
use libfuzzer_sys::fuzz_target;

const ROUTES: &[&str] = &[
    "/v1/generate",
    "/generate",
    "/generate_stream",
    "/",
    "/tokenize",
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/inference/infer",
    "/inference/batch",
    "/inference/infer_multimodal",
    "/v2/models/identity/infer",
    "/v2/models/add_sub/infer",
    "/v1/models/rows:predict",
    "/v1/models/identity/predict",
    "/v1/models/rows/infer",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let route = ROUTES[pick as usize % ROUTES.len()];
    let headers = [("content-type", "application/json".to_string())];
    let (status, answer) = send("POST", route, &headers, body.to_vec());
    assert_not_server_error(route, status, &answer);
});
