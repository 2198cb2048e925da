use std::collections::HashSet;

use super::{build, docs};
use crate::Compat;

/// Each route has one doc under each `--compat`, each doc a route, and no
/// two types share a schema name.
#[test]
fn every_route_has_its_doc_and_every_doc_a_route() {
    let (_, table) = crate::all_routes().into_parts();
    let declared: HashSet<(String, String)> = table
        .iter()
        .map(|d| (d.method.to_string(), d.path.to_string()))
        .collect();
    for compat in [Compat::Kserve, Compat::Pinferencia] {
        let mut seen = HashSet::new();
        for d in docs()
            .iter()
            .filter(|d| d.compat.is_none_or(|c| c == compat))
        {
            let key = (d.method.to_string(), d.path.to_string());
            assert!(
                declared.contains(&key),
                "{key:?} is documented but not served"
            );
            assert!(
                seen.insert(key.clone()),
                "{key:?} is documented twice under {compat:?}"
            );
        }
        let missing: Vec<_> = declared.difference(&seen).collect();
        assert!(
            missing.is_empty(),
            "routes without a doc under {compat:?}: {missing:?}"
        );
        let (doc, clashes) = build(&table, compat);
        assert!(
            clashes.is_empty(),
            "schema names used by two types: {clashes:?}"
        );
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        let mut ids = HashSet::new();
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap().to_string();
                assert!(
                    ids.insert(id.clone()),
                    "{method} {path}: operationId {id} is taken"
                );
            }
        }
    }
}
