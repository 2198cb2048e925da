//! JSON tensor data: the typed parser that reads `data` straight from the body
//! (`FlatData`), against the same bytes parsed as a `serde_json::Value` tree
//! and flattened (what faces that keep a tree use), then the conversion to
//! every datatype, V1 rows, and the round trip through `JsonData`.
//!
//! Input: byte 0 picks the datatype, byte 1 the rank (0..=3), then one byte
//! per dimension (255 stands for -1), then the JSON text of `data`.
#![no_main]

use inferd_core::codec::{
    tensor_from_flat, tensor_from_json, tensor_from_rows, FlatData, JsonData,
};
use inferd_core::{CoreResult, DataType, Tensor};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const MAX_ELEMENTS: usize = 1 << 16;

/// Two results agree: equal tensors, or errors with the same text.
fn same(a: &CoreResult<Tensor>, b: &CoreResult<Tensor>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.to_string() == b.to_string(),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let [kind, rank, rest @ ..] = data else {
        return;
    };
    let datatype = DataType::ALL[*kind as usize % DataType::ALL.len()];
    let rank = (*rank as usize % 4).min(rest.len());
    let (dims, text) = rest.split_at(rank);
    let shape: Vec<i64> = dims
        .iter()
        .map(|&d| if d == 255 { -1 } else { i64::from(d) })
        .collect();

    let direct = serde_json::from_slice::<FlatData>(text);
    let tree = serde_json::from_slice::<Value>(text);
    assert_eq!(
        direct.is_ok(),
        tree.is_ok(),
        "the two parsers disagree on {direct:?} / {tree:?}"
    );
    let (Ok(flat), Ok(tree)) = (direct, tree) else {
        return;
    };
    assert_eq!(
        flat,
        FlatData::from_value(&tree),
        "typed leaves differ from the tree's"
    );

    let typed = tensor_from_flat("x", datatype, &shape, flat, MAX_ELEMENTS);
    let from_tree = tensor_from_json("x", datatype, &shape, &tree, MAX_ELEMENTS);
    assert!(same(&typed, &from_tree), "{typed:?} vs {from_tree:?}");

    if let Ok(tensor) = &typed {
        let wire: Vec<i64> = tensor.shape().iter().map(|&d| d as i64).collect();
        let again = tensor_from_json("x", datatype, &wire, &serde_json::to_value(JsonData(tensor.data())).unwrap(), MAX_ELEMENTS);
        assert_eq!(
            again.as_ref().ok(),
            Some(tensor),
            "JSON round trip: {again:?}"
        );
    }
    if let Value::Array(rows) = &tree {
        let _ = tensor_from_rows("x", datatype, rows, MAX_ELEMENTS);
    }
});
