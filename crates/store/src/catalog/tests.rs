//! The query language against a small catalog, case by case (expected entries
//! named by letter), and the catalog's life: create, update, delete, seed once.

use serde_json::{json, Value};

use super::{Query, QueryError};
use crate::{temp_store, Store, StoreError};

fn fixture(tag: &str) -> Store {
    let (store, _) = temp_store(tag);
    let entries = json!([
        {"uuid": "0000000000000000000000000000000a", "name": "text to text model service",
         "description": "chat, qa", "framework": "llama.cpp", "requestCpu": 4, "requestMemory": 1024,
         "system": true, "supportDistributed": false, "modelServiceRefs": [{"modelUuid": "smollm2"}]},
        {"uuid": "0000000000000000000000000000000b", "name": "IntelCore_7 service", "description": "tabular",
         "framework": "onnx", "requestCpu": 1, "requestMemory": 2048, "system": false,
         "supportDistributed": false, "modelServiceRefs": ["iris", "digits"]},
        {"uuid": "0000000000000000000000000000000c", "name": "IntelCore-8 service", "framework": "onnx",
         "requestCpu": 2, "requestMemory": 512, "system": false, "supportDistributed": true},
        {"uuid": "0000000000000000000000000000000d", "name": "embed, with comma", "description": "vectors",
         "readme": "x' OR '1'='1", "framework": "candle", "requestCpu": 2, "requestMemory": 4096,
         "system": true, "modelServiceRefs": [{"modelUuid": "minilm"}]},
        {"uuid": "0000000000000000000000000000000e", "name": "x' OR '1'='1", "framework": "tgi",
         "requestCpu": 8, "requestMemory": 0, "system": false, "supportDistributed": false},
    ]);
    assert_eq!(store.seed_catalog(entries.as_array().unwrap()).unwrap(), 5);
    store
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The letters (last uuid digit) of the entries a query selects, in order.
fn run(store: &Store, pairs: &[(&str, &str)]) -> String {
    let q = Query::parse(&params(pairs)).unwrap_or_else(|e| panic!("{pairs:?}: {e}"));
    store
        .query_catalog(&q)
        .unwrap()
        .inventories
        .iter()
        .map(|i| i["uuid"].as_str().unwrap().chars().last().unwrap())
        .collect()
}

fn refused(pairs: &[(&str, &str)]) -> QueryError {
    Query::parse(&params(pairs)).expect_err(&format!("{pairs:?} must be refused"))
}

#[test]
fn every_operator_in_zstack_order() {
    let s = fixture("q-ops");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "abcde"),
        (&[("q", "name=text to text model service")], "a"),
        (&[("q", "name!=text to text model service")], "bcde"),
        (&[("q", "requestCpu>=2")], "acde"),
        (&[("q", "requestCpu<=2")], "bcd"),
        (&[("q", "requestCpu>2")], "ae"),
        (&[("q", "requestCpu<2")], "b"),
        (&[("q", "framework?=onnx,candle")], "bcd"),
        (&[("q", "framework!?=onnx,candle")], "ae"),
        (&[("q", "requestCpu?=1,8")], "be"),
        (&[("q", "name~=IntelCore%")], "bc"),
        (&[("q", "name~=IntelCore_7%")], "b"),
        (&[("q", "name~=IntelCore_8%")], "c"),
        (&[("q", "name~=%intelcore%")], "bc"),
        (&[("q", "name!~=%service")], "de"),
        (&[("q", "name~=%,%")], "d"),
        (&[("q", "name=embed, with comma")], "d"),
        (&[("q", "description is null")], "ce"),
        (&[("q", "description not null")], "abd"),
        (&[("q", "description=null")], "ce"),
        (&[("q", "description!=null")], "abd"),
        (&[("q", "system=true")], "ad"),
        (&[("q", "system=false"), ("q", "requestCpu>1")], "ce"),
        (
            &[("q", "supportDistributed=false"), ("q", "framework=onnx")],
            "b",
        ),
        (&[("q", "modelServiceRefs.modelUuid=iris")], "b"),
        (&[("q", "modelServiceRefs.modelUuid?=minilm,smollm2")], "ad"),
        (&[("q", "modelServiceRefs.modelUuid is null")], "ce"),
        (&[("q", "modelServiceRefs.modelUuid not null")], "abd"),
        (&[("q", "description= qa")], ""),
        (&[("q", "description~=%, qa")], "a"),
        (
            &[
                ("unknown", "ignored"),
                ("q", "uuid=0000000000000000000000000000000c"),
            ],
            "c",
        ),
    ];
    for (pairs, want) in cases {
        assert_eq!(run(&s, pairs), *want, "{pairs:?}");
    }
}

#[test]
fn values_are_bound_never_interpolated() {
    let s = fixture("q-sql");
    assert_eq!(run(&s, &[("q", "name=x' OR '1'='1")]), "e");
    assert_eq!(run(&s, &[("q", "name=nothing' OR '1'='1")]), "");
    assert_eq!(run(&s, &[("q", "readme~=%' OR%")]), "d");
    assert_eq!(
        run(&s, &[("q", "name=a'; DROP TABLE model_services; --")]),
        ""
    );
    assert_eq!(run(&s, &[]), "abcde");
}

#[test]
fn malformed_conditions_say_which_and_why() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("q", "colour=red")], "unknown field 'colour'"),
        (&[("q", "name")], "doesn't contain any query operator"),
        (&[("q", "=foo")], "split by =: the field name is empty"),
        (&[("q", "  !=foo")], "split by !=: the field name is empty"),
        (&[("q", " is null")], "the field name is empty"),
        (&[("q", "name=")], "split by =: the value is empty"),
        (
            &[("q", "name is nul")],
            "doesn't contain any query operator",
        ),
        (&[("q", "requestCpu?=1,x")], "'x' is not an integer"),
        (&[("q", "requestCpu>abc")], "'abc' is not an integer"),
        (&[("q", "system=yes")], "'yes' is not true or false"),
        (
            &[("q", "requestCpu~=1%")],
            "LIKE on a field that is not text",
        ),
        (&[("q", "modelServiceRefs.colour=x")], "modelUuid and uuid"),
        (&[("q", "yaml.services=x")], "unknown field 'yaml.services'"),
        (
            &[("q", "createDate>yesterday")],
            "'yesterday' is not a date",
        ),
        (
            &[("q", "cpuArchitectures=x")],
            "unknown field 'cpuArchitectures'",
        ),
        (
            &[("limit", "abc")],
            "'limit' must be a non-negative integer",
        ),
        (&[("limit", "-1")], "'limit' must be a non-negative integer"),
        (
            &[("start", "1.5")],
            "'start' must be a non-negative integer",
        ),
        (&[("count", "yes")], "'count' must be true or false"),
        (&[("fields", "")], "'fields' is empty"),
        (
            &[("fields", "uuid,colour")],
            "unknown field 'colour'; fields are [uuid,",
        ),
        (&[("sort", "-colour")], "Cannot sort by 'colour'"),
        (&[("sortDirection", "desc")], "needs 'sortBy'"),
        (
            &[("sortBy", "name"), ("sortDirection", "down")],
            "asc or desc",
        ),
    ];
    for (pairs, needle) in cases {
        let e = refused(pairs).to_string();
        assert!(e.contains(needle), "{pairs:?}: {e}");
        assert!(e.starts_with("Invalid query parameter"), "{pairs:?}: {e}");
    }
}

#[test]
fn paging_counting_projection_and_sorting() {
    let s = fixture("q-shape");
    let q = |pairs: &[(&str, &str)]| Query::parse(&params(pairs)).unwrap();
    assert_eq!(run(&s, &[("limit", "2"), ("start", "1")]), "bc");
    assert_eq!(run(&s, &[("limit", "0")]), "");
    assert_eq!(run(&s, &[("start", "10")]), "");
    let reply = s
        .query_catalog(&q(&[("limit", "2"), ("replyWithCount", "true")]))
        .unwrap();
    assert_eq!((reply.inventories.len(), reply.total), (2, 5));
    let counted = q(&[("count", "true"), ("q", "system=true")]);
    assert!(counted.count);
    let reply = s.query_catalog(&counted).unwrap();
    assert_eq!((reply.inventories.len(), reply.total), (0, 2));
    let projected = s
        .query_catalog(&q(&[("fields", "uuid,name"), ("fields", "system")]))
        .unwrap();
    for inv in &projected.inventories {
        let keys: Vec<&String> = inv.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "system", "uuid"], "{inv}");
    }
    assert_eq!(run(&s, &[("sort", "-requestCpu")]), "eacdb");
    assert_eq!(run(&s, &[("sort", "+requestMemory")]), "ecabd");
    assert_eq!(run(&s, &[("sort", "requestMemory")]), "ecabd");
    assert_eq!(run(&s, &[("sort", " requestCpu")]), "bcdae");
    assert_eq!(
        run(&s, &[("sortBy", "name"), ("sortDirection", "desc")]),
        "eadbc"
    );
    assert_eq!(run(&s, &[("sortBy", "name")]), "cbdae");
    let touched = json!({"description": "touched"});
    s.update_catalog_entry(
        "0000000000000000000000000000000c",
        touched.as_object().unwrap(),
    )
    .unwrap()
    .unwrap();
    assert!(run(&s, &[("sort", "-lastOpDate")]).starts_with('c'));
    // Dates are query fields, in ZStack's forms.
    let epoch_ms = (crate::now() * 1000.0) as i64 + 60_000;
    assert_eq!(
        run(
            &s,
            &[("q", "createDate>2000-01-01 00:00:00"), ("sortBy", "name")]
        ),
        "cbdae"
    );
    assert_eq!(run(&s, &[("q", "createDate<2000-01-01")]), "");
    assert_eq!(
        run(
            &s,
            &[("q", &format!("lastOpDate<{epoch_ms}")), ("sortBy", "name")]
        ),
        "cbdae"
    );
    let since = crate::time::rfc3339(crate::now() - 3600.0);
    assert_eq!(
        run(
            &s,
            &[("q", &format!("createDate>={since}")), ("sortBy", "name")]
        ),
        "cbdae"
    );
}

#[test]
fn refusals_are_typed_by_rule() {
    assert_eq!(
        refused(&[("q", "name")]),
        QueryError::NoOperator {
            cond: "name".into()
        }
    );
    assert_eq!(
        refused(&[("q", "requestCpu>abc")]),
        QueryError::NotAnInteger {
            cond: "requestCpu>abc".into(),
            value: "abc".into()
        }
    );
    assert_eq!(
        refused(&[("limit", "ten")]),
        QueryError::BadInteger {
            param: "limit",
            value: "ten".into()
        }
    );
    assert!(matches!(
        refused(&[("q", "colour=red")]),
        QueryError::UnknownField { field, .. } if field == "colour"
    ));
    assert_eq!(refused(&[("fields", ",")]), QueryError::EmptyFields);
}

#[test]
fn a_path_uuid_is_bound_not_parsed() {
    let s = fixture("q-path");
    let q = Query::parse(&params(&[("q", "system=true"), ("fields", "uuid")])).unwrap();
    let reply = s
        .query_catalog(&q.clone().only_uuid("0000000000000000000000000000000b"))
        .unwrap();
    assert_eq!(
        reply.inventories,
        [json!({"uuid": "0000000000000000000000000000000b"})]
    );
    let odd = s.query_catalog(&q.only_uuid("a!=b")).unwrap();
    assert!(odd.inventories.is_empty());
}

#[test]
fn inventories_carry_every_seed_field() {
    let s = fixture("q-fields");
    let inv = s
        .catalog_entry("0000000000000000000000000000000b")
        .unwrap()
        .unwrap();
    let keys: Vec<&str> = inv
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 29);
    for field in super::FIELDS.iter() {
        assert!(
            keys.contains(&field.api),
            "{} missing from {inv}",
            field.api
        );
    }
    assert_eq!(inv["system"], false);
    assert_eq!(inv["requestMemory"], 2048);
    assert_eq!(inv["installPath"], Value::Null);
    let refs = inv["modelServiceRefs"].as_array().unwrap();
    assert_eq!(refs.len(), 2);
    assert_eq!(refs[0]["modelUuid"], "iris");
    assert_eq!(refs[0]["modelServiceUuid"], inv["uuid"]);
    assert!(inv["createDate"].as_str().unwrap().ends_with('M'), "{inv}");
    assert!(s
        .catalog_entry("ffffffffffffffffffffffffffffffff")
        .unwrap()
        .is_none());
}

#[test]
fn entries_are_created_updated_deleted_and_seeded_once() {
    let s = fixture("q-crud");
    let bad = |v: Value| match s.create_catalog_entry(v.as_object().unwrap()) {
        Err(StoreError::Invalid(m)) => m,
        other => panic!("{v} must be refused, got {other:?}"),
    };
    assert!(bad(json!({"requestCpu": 1})).contains("'name' is required"));
    assert!(bad(json!({"name": "x", "requestCpu": -1})).contains("non-negative"));
    assert!(bad(json!({"name": "x", "requestCpu": "4"})).contains("must be an integer"));
    assert!(bad(json!({"name": "x", "system": "yes"})).contains("true or false"));
    assert!(bad(json!({"name": "x", "colour": "red"})).contains("'colour'"));
    assert!(bad(json!({"name": "x", "uuid": "short"})).contains("32 hex"));
    assert!(bad(json!({"name": "x", "createDate": 1})).contains("set by the server"));
    assert!(bad(json!({"name": "x", "modelServiceRefs": [1]})).contains("modelUuid"));
    assert!(bad(json!({"name": "x", "modelUuids": "iris"})).contains("'modelUuids' must be a list"));
    let both = json!({"name": "x", "modelUuids": [], "modelServiceRefs": []});
    assert!(bad(both).contains("not both"));
    let short = json!({"name": "short", "modelUuids": ["iris", {"modelUuid": "digits"}]});
    let short = s.create_catalog_entry(short.as_object().unwrap()).unwrap();
    let linked: Vec<&Value> = short["modelServiceRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["modelUuid"])
        .collect();
    assert_eq!(linked, ["iris", "digits"]);
    assert!(s
        .delete_catalog_entry(short["uuid"].as_str().unwrap())
        .unwrap());
    let created = s
        .create_catalog_entry(
            json!({"name": "new one", "framework": "onnx", "modelServiceRefs": ["iris"]})
                .as_object()
                .unwrap(),
        )
        .unwrap();
    let uuid = created["uuid"].as_str().unwrap().to_string();
    assert_eq!(uuid.len(), 32);
    let dup = json!({"name": "again", "uuid": uuid});
    assert!(matches!(
        s.create_catalog_entry(dup.as_object().unwrap()),
        Err(StoreError::Conflict(_))
    ));
    let updated = s
        .update_catalog_entry(
            &uuid,
            json!({"description": "changed", "modelServiceRefs": []})
                .as_object()
                .unwrap(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(updated["description"], "changed");
    assert_eq!(updated["name"], "new one");
    assert_eq!(updated["modelServiceRefs"], json!([]));
    let unknown = s.update_catalog_entry(
        "ffffffffffffffffffffffffffffffff",
        json!({"description": "x"}).as_object().unwrap(),
    );
    assert!(unknown.unwrap().is_none());
    assert!(matches!(
        s.update_catalog_entry(&uuid, json!({"uuid": "x"}).as_object().unwrap()),
        Err(StoreError::Invalid(_))
    ));
    assert!(s.delete_catalog_entry(&uuid).unwrap());
    assert!(!s.delete_catalog_entry(&uuid).unwrap());
    for letter in ["a", "b", "c", "d", "e"] {
        assert!(s.delete_catalog_entry(&format!("{:0>32}", letter)).unwrap());
    }
    assert_eq!(s.seed_catalog(&[json!({"name": "again"})]).unwrap(), 0);
    assert_eq!(run(&s, &[]), "");
}

#[test]
fn the_shipped_catalog_file_seeds() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../catalog/model-services.json");
    let entries = super::read_catalog_file(&path).unwrap();
    let (s, _) = temp_store("q-file");
    assert_eq!(s.seed_catalog(&entries).unwrap(), entries.len());
    let reply = s
        .query_catalog(
            &Query::parse(&params(&[("q", "modelServiceRefs.modelUuid=digits")])).unwrap(),
        )
        .unwrap();
    assert_eq!(reply.inventories.len(), 1);
    assert_eq!(reply.inventories[0]["framework"], "onnx");
}

/// Found by fuzz/zstack_query: a thousand conditions, or an `?=` list of 33000
/// values, were accepted and then failed in SQLite ("Expression tree is too
/// large", "too many SQL variables"), a 500. Every accepted query must run.
#[test]
fn queries_too_big_for_sqlite_are_refused_before_it() {
    use super::query::{MAX_CONDITIONS, MAX_VALUES};
    let s = fixture("q-big");
    let ne = |n: usize| vec![("q", "modelServiceRefs.modelUuid!=nothing"); n];
    assert_eq!(run(&s, &ne(MAX_CONDITIONS)), "abd");
    assert_eq!(
        refused(&ne(MAX_CONDITIONS + 1)),
        QueryError::TooManyConditions {
            max: MAX_CONDITIONS
        }
    );
    assert!(matches!(
        refused(&ne(1000)),
        QueryError::TooManyConditions { .. }
    ));

    let list = |n: usize| format!("requestCpu?={}", vec!["2"; n].join(","));
    assert_eq!(run(&s, &[("q", &list(MAX_VALUES))]), "cd");
    assert_eq!(
        refused(&[
            ("q", &list(MAX_VALUES / 2)),
            ("q", &list(MAX_VALUES / 2 + 1))
        ]),
        QueryError::TooManyValues {
            count: MAX_VALUES + 1,
            max: MAX_VALUES
        }
    );
    assert!(matches!(
        refused(&[("q", &list(33000))]),
        QueryError::TooManyValues { count: 33000, .. }
    ));
}
