//! ZStack's `q` query language (and `limit`, `start`, `sort`, `fields`...)
//! over the model-service catalog: parsed, compiled to SQL and run against a
//! store seeded with the shipped catalog. A query the parser accepts must
//! compile to SQL that SQLite accepts, and honour its limit.
//!
//! Input: a URL query string without percent-encoding (`q=name~=%25a&limit=2`
//! is written `q=name~=%a&limit=2`).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use inferd_store::{read_catalog_file, CatalogQuery, Store, StoreError};
use libfuzzer_sys::fuzz_target;

fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("inferd-fuzz-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).expect("a store in the temp dir");
        let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog/model-services.json");
        let entries = read_catalog_file(&catalog).expect("the shipped catalog");
        store.seed_catalog(&entries).expect("seeding");
        store
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let params: Vec<(String, String)> = text
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect();
    let Ok(query) = CatalogQuery::parse(&params) else {
        return;
    };
    match store().query_catalog(&query) {
        Ok(reply) => assert!(reply.inventories.len() as u64 <= query.limit),
        Err(StoreError::Sqlite(e)) => panic!("accepted query {params:?} is bad SQL: {e}"),
        Err(_) => {}
    }
});
