//! The raw little-endian tensor decoder (Triton's binary form) on its own:
//! every datatype, any claimed shape. A decoded tensor must encode back to
//! the same bytes (BOOL reads any non-zero byte as true, and writes 1).
//!
//! Input: byte 0 picks the datatype, byte 1 the rank (0..=3), then one byte
//! per dimension (255 stands for -1), then the raw bytes.
#![no_main]

use inferd_core::codec::{tensor_from_raw, tensor_to_raw};
use inferd_core::DataType;
use libfuzzer_sys::fuzz_target;

/// The server's default element limit, so claimed shapes meet the real bound.
const MAX_ELEMENTS: usize = 1 << 24;

fuzz_target!(|data: &[u8]| {
    let [kind, rank, rest @ ..] = data else {
        return;
    };
    let datatype = DataType::ALL[*kind as usize % DataType::ALL.len()];
    let rank = (*rank as usize % 4).min(rest.len());
    let (dims, raw) = rest.split_at(rank);
    let shape: Vec<i64> = dims
        .iter()
        .map(|&d| if d == 255 { -1 } else { i64::from(d) })
        .collect();
    if let Ok(tensor) = tensor_from_raw("x", datatype, &shape, raw, MAX_ELEMENTS) {
        assert_eq!(tensor.datatype(), datatype);
        let expected: Vec<u8> = match datatype {
            DataType::Bool => raw.iter().map(|&b| u8::from(b != 0)).collect(),
            _ => raw.to_vec(),
        };
        assert_eq!(tensor_to_raw(&tensor), expected, "raw round trip");
    }
});
