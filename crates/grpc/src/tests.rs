//! Face tests: the RPCs called on the service itself over the real default
//! models, no socket (the Python suite drives tritonclient over one).

use std::path::Path;
use std::sync::Arc;

use inferd_auth::Auth;
use inferd_backend_builtin::BuiltinBackend;
use inferd_backend_onnx::OnnxBackend;
use inferd_core::{Manager, ManagerConfig};
use inferd_store::{Role, Store};
use tonic::{Code, Request};

use crate::pb::grpc_inference_service_server::GrpcInferenceService;
use crate::pb::infer_parameter::ParameterChoice;
use crate::pb::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use crate::pb::{self, InferParameter, InferTensorContents};
use crate::Face;

const IRIS_ROWS: [f32; 8] = [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3];

async fn face() -> Face {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let manager = Manager::new(
        &root,
        vec![Arc::new(OnnxBackend), Arc::new(BuiltinBackend)],
        ManagerConfig::default(),
    );
    manager.load_all().await;
    crate::face(manager, None, 1 << 20)
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn iris_input(contents: Option<InferTensorContents>) -> InferInputTensor {
    InferInputTensor {
        name: "X".into(),
        datatype: "FP32".into(),
        shape: vec![2, 4],
        parameters: Default::default(),
        contents,
    }
}

fn iris_raw() -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: "iris".into(),
        id: "req-7".into(),
        inputs: vec![iris_input(None)],
        raw_input_contents: vec![le_bytes(&IRIS_ROWS)],
        ..Default::default()
    }
}

/// The INT64 labels of an iris answer.
fn labels(res: &pb::ModelInferResponse) -> Vec<i64> {
    let i = res.outputs.iter().position(|o| o.name == "label").unwrap();
    assert_eq!(res.outputs[i].datatype, "INT64");
    res.raw_output_contents[i]
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

async fn infer_err(face: &Face, req: pb::ModelInferRequest) -> tonic::Status {
    face.model_infer(Request::new(req))
        .await
        .expect_err("the request must be refused")
}

#[tokio::test]
async fn health_and_readiness() {
    let face = face().await;
    let live = face
        .server_live(Request::new(pb::ServerLiveRequest {}))
        .await;
    assert!(live.unwrap().into_inner().live);
    let ready = face
        .server_ready(Request::new(pb::ServerReadyRequest {}))
        .await;
    assert!(ready.unwrap().into_inner().ready);
    let ask = |name: &str, version: &str| pb::ModelReadyRequest {
        name: name.into(),
        version: version.into(),
    };
    let iris = face
        .model_ready(Request::new(ask("iris", "1")))
        .await
        .unwrap();
    assert!(iris.into_inner().ready);
    let unknown = face
        .model_ready(Request::new(ask("nope", "")))
        .await
        .unwrap();
    assert!(!unknown.into_inner().ready);
    let bad = face.model_ready(Request::new(ask("iris", "x"))).await;
    assert_eq!(bad.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn metadata_and_config_describe_the_model() {
    let face = face().await;
    let server = face
        .server_metadata(Request::new(pb::ServerMetadataRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(server.name, "inferd");
    assert!(server.extensions.contains(&"model_repository".to_string()));
    let meta = face
        .model_metadata(Request::new(pb::ModelMetadataRequest {
            name: "iris".into(),
            version: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.versions, ["1"]);
    assert_eq!(meta.inputs[0].name, "X");
    assert_eq!(meta.inputs[0].datatype, "FP32");
    assert_eq!(meta.inputs[0].shape, [-1, 4]);
    let config = face
        .model_config(Request::new(pb::ModelConfigRequest {
            name: "iris".into(),
            version: "1".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert!(config.max_batch_size > 0);
    assert_eq!(
        config.input[0].dims,
        [4],
        "batching leaves out the batch dim"
    );
    assert_eq!(config.input[0].data_type, pb::DataType::TypeFp32 as i32);
    let missing = face
        .model_metadata(Request::new(pb::ModelMetadataRequest {
            name: "nope".into(),
            version: String::new(),
        }))
        .await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn raw_and_typed_inputs_give_the_same_answer() {
    let face = face().await;
    let raw = face
        .model_infer(Request::new(iris_raw()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(raw.id, "req-7");
    assert_eq!(raw.model_version, "1");
    assert_eq!(labels(&raw), [0, 2]);
    let typed = pb::ModelInferRequest {
        model_name: "iris".into(),
        inputs: vec![iris_input(Some(InferTensorContents {
            fp32_contents: IRIS_ROWS.to_vec(),
            ..Default::default()
        }))],
        outputs: vec![InferRequestedOutputTensor {
            name: "label".into(),
            parameters: Default::default(),
        }],
        ..Default::default()
    };
    let typed = face
        .model_infer(Request::new(typed))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(typed.outputs.len(), 1, "only the output asked for");
    assert_eq!(labels(&typed), [0, 2]);
    assert_eq!(typed.outputs[0].shape, [2]);
}

#[tokio::test]
async fn int_and_bytes_contents_round_trip() {
    let face = face().await;
    let ints = |name: &str, v: Vec<i32>| InferInputTensor {
        name: name.into(),
        datatype: "INT32".into(),
        shape: vec![16],
        parameters: Default::default(),
        contents: Some(InferTensorContents {
            int_contents: v,
            ..Default::default()
        }),
    };
    let res = face
        .model_infer(Request::new(pb::ModelInferRequest {
            model_name: "add_sub".into(),
            inputs: vec![
                ints("INPUT0", (1..=16).collect()),
                ints("INPUT1", vec![1; 16]),
            ],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let i = res
        .outputs
        .iter()
        .position(|o| o.name == "OUTPUT0")
        .unwrap();
    let sum: Vec<i32> = res.raw_output_contents[i]
        .chunks(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(sum, (2..=17).collect::<Vec<_>>());

    let words = vec![b"hello".to_vec(), Vec::new(), "zaïre".as_bytes().to_vec()];
    let res = face
        .model_infer(Request::new(pb::ModelInferRequest {
            model_name: "identity".into(),
            inputs: vec![InferInputTensor {
                name: "INPUT0".into(),
                datatype: "BYTES".into(),
                shape: vec![3],
                parameters: Default::default(),
                contents: Some(InferTensorContents {
                    bytes_contents: words.clone(),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.outputs[0].datatype, "BYTES");
    let mut expected = Vec::new();
    for w in &words {
        expected.extend_from_slice(&(w.len() as u32).to_le_bytes());
        expected.extend_from_slice(w);
    }
    assert_eq!(res.raw_output_contents[0], expected);
}

/// Every malformed request is INVALID_ARGUMENT (or NOT_FOUND) with a message
/// that names what was wrong, and the face still answers after each.
#[tokio::test]
async fn bad_requests_are_refused_with_what_was_wrong() {
    let face = face().await;
    let with = |f: &dyn Fn(&mut pb::ModelInferRequest)| {
        let mut r = iris_raw();
        f(&mut r);
        r
    };
    let param = |c: ParameterChoice| InferParameter {
        parameter_choice: Some(c),
    };
    let cases: Vec<(&str, pb::ModelInferRequest, Code, &str)> = vec![
        (
            "no model",
            with(&|r| r.model_name.clear()),
            Code::InvalidArgument,
            "model_name",
        ),
        (
            "unknown model",
            with(&|r| r.model_name = "nope".into()),
            Code::NotFound,
            "nope",
        ),
        (
            "bad version",
            with(&|r| r.model_version = "x".into()),
            Code::NotFound,
            "x",
        ),
        (
            "bad datatype",
            with(&|r| r.inputs[0].datatype = "FP99".into()),
            Code::InvalidArgument,
            "FP99",
        ),
        (
            "wrong datatype",
            with(&|r| r.inputs[0].datatype = "INT32".into()),
            Code::InvalidArgument,
            "X",
        ),
        (
            "short raw",
            with(&|r| r.raw_input_contents[0].truncate(12)),
            Code::InvalidArgument,
            "X",
        ),
        (
            "raw count",
            with(&|r| r.raw_input_contents.push(vec![0; 4])),
            Code::InvalidArgument,
            "raw_input_contents",
        ),
        (
            "negative dim",
            with(&|r| r.inputs[0].shape = vec![-2, 4]),
            Code::InvalidArgument,
            "X",
        ),
        (
            "wrong shape",
            with(&|r| r.inputs[0].shape = vec![1, 8]),
            Code::InvalidArgument,
            "X",
        ),
        (
            "raw and typed",
            with(&|r| {
                r.inputs[0].contents = Some(InferTensorContents {
                    fp32_contents: vec![1.0],
                    ..Default::default()
                })
            }),
            Code::InvalidArgument,
            "both",
        ),
        (
            "wrong typed field",
            with(&|r| {
                r.raw_input_contents.clear();
                r.inputs[0].contents = Some(InferTensorContents {
                    int_contents: vec![1; 8],
                    ..Default::default()
                });
            }),
            Code::InvalidArgument,
            "fp32_contents",
        ),
        (
            "typed FP16",
            with(&|r| {
                r.raw_input_contents.clear();
                r.inputs[0].datatype = "FP16".into();
            }),
            Code::InvalidArgument,
            "raw_input_contents",
        ),
        (
            "string timeout",
            with(&|r| {
                r.parameters.insert(
                    "timeout".into(),
                    param(ParameterChoice::StringParam("soon".into())),
                );
            }),
            Code::InvalidArgument,
            "timeout",
        ),
        (
            "classification",
            with(&|r| {
                r.outputs = vec![InferRequestedOutputTensor {
                    name: "probabilities".into(),
                    parameters: [(
                        "classification".to_string(),
                        param(ParameterChoice::Int64Param(2)),
                    )]
                    .into(),
                }];
            }),
            Code::InvalidArgument,
            "classification",
        ),
        (
            "too many elements",
            with(&|r| {
                r.raw_input_contents.clear();
                r.inputs[0].shape = vec![1 << 40, 4];
            }),
            Code::ResourceExhausted,
            "X",
        ),
    ];
    for (what, req, code, needle) in cases {
        let e = infer_err(&face, req).await;
        assert_eq!(e.code(), code, "{what}: {}", e.message());
        assert!(e.message().contains(needle), "{what}: {}", e.message());
        let good = face.model_infer(Request::new(iris_raw())).await;
        assert!(good.is_ok(), "after {what}");
    }

    let small = pb::ModelInferRequest {
        model_name: "add_sub".into(),
        inputs: vec![InferInputTensor {
            name: "INPUT0".into(),
            datatype: "INT8".into(),
            shape: vec![1],
            parameters: Default::default(),
            contents: Some(InferTensorContents {
                int_contents: vec![300],
                ..Default::default()
            }),
        }],
        ..Default::default()
    };
    let e = infer_err(&face, small).await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("300"), "{}", e.message());
}

#[tokio::test]
async fn repository_statistics_and_unload() {
    let face = face().await;
    face.model_infer(Request::new(iris_raw())).await.unwrap();
    let stats = face
        .model_statistics(Request::new(pb::ModelStatisticsRequest {
            name: "iris".into(),
            version: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let iris = &stats.model_stats[0];
    assert_eq!((iris.name.as_str(), iris.version.as_str()), ("iris", "1"));
    assert!(iris.inference_count >= 2, "two rows ran: {iris:?}");
    assert!(
        iris.inference_stats
            .as_ref()
            .unwrap()
            .success
            .unwrap()
            .count
            >= 1
    );

    let index = face
        .repository_index(Request::new(pb::RepositoryIndexRequest {
            repository_name: String::new(),
            ready: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(index
        .models
        .iter()
        .any(|m| m.name == "digits" && m.state == "READY"));

    let unload = pb::RepositoryModelUnloadRequest {
        model_name: "digits".into(),
        ..Default::default()
    };
    face.repository_model_unload(Request::new(unload))
        .await
        .unwrap();
    let ready = face
        .model_ready(Request::new(pb::ModelReadyRequest {
            name: "digits".into(),
            version: String::new(),
        }))
        .await
        .unwrap();
    assert!(!ready.into_inner().ready);
    let pixels = pb::ModelInferRequest {
        model_name: "digits".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 64],
            parameters: Default::default(),
            contents: Some(InferTensorContents {
                fp32_contents: vec![0.0; 64],
                ..Default::default()
            }),
        }],
        ..Default::default()
    };
    let e = infer_err(&face, pixels.clone()).await;
    assert_eq!(e.code(), Code::Unavailable, "{}", e.message());

    let override_config = pb::RepositoryModelLoadRequest {
        model_name: "digits".into(),
        parameters: [(
            "config".to_string(),
            pb::ModelRepositoryParameter {
                parameter_choice: Some(
                    pb::model_repository_parameter::ParameterChoice::StringParam("{}".into()),
                ),
            },
        )]
        .into(),
        ..Default::default()
    };
    let e = face
        .repository_model_load(Request::new(override_config))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let load = pb::RepositoryModelLoadRequest {
        model_name: "digits".into(),
        ..Default::default()
    };
    face.repository_model_load(Request::new(load))
        .await
        .unwrap();
    assert!(face.model_infer(Request::new(pixels)).await.is_ok());
}

#[tokio::test]
async fn credentials_in_metadata_are_checked_per_role() {
    let dir = std::env::temp_dir().join(format!("inferd-grpc-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    let (_, reader) = store.create_key(Role::Read, "reader").unwrap();
    let (_, user) = store.create_key(Role::User, "user").unwrap();
    let mut face = face().await;
    face.auth = Some(Arc::new(Auth::new(store, true)));
    let with_key = |key: Option<&str>| {
        let mut req = Request::new(iris_raw());
        if let Some(k) = key {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {k}").parse().unwrap());
        }
        req
    };
    let e = face.model_infer(with_key(None)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{}", e.message());
    let e = face
        .model_infer(with_key(Some("not-a-key")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = face.model_infer(with_key(Some(&reader))).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("ModelInfer"), "{}", e.message());
    assert!(face.model_infer(with_key(Some(&user))).await.is_ok());
    let mut by_header = Request::new(iris_raw());
    by_header
        .metadata_mut()
        .insert("x-api-key", user.parse().unwrap());
    assert!(face.model_infer(by_header).await.is_ok());
    let live = face
        .server_live(Request::new(pb::ServerLiveRequest {}))
        .await;
    assert!(live.is_ok(), "health stays open");
    let unload = Request::new(pb::RepositoryModelUnloadRequest {
        model_name: "iris".into(),
        ..Default::default()
    });
    let e = face.repository_model_unload(unload).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn grpc_timeouts_are_read_in_every_unit() {
    let deadline = |v: &str| {
        let mut m = tonic::codegen::http::HeaderMap::new();
        m.insert("grpc-timeout", v.parse().unwrap());
        crate::service::grpc_deadline(&m)
    };
    use std::time::Duration;
    let ok = |v: &str| deadline(v).unwrap();
    assert_eq!(ok("2S"), Some(Duration::from_secs(2)));
    assert_eq!(ok("150m"), Some(Duration::from_millis(150)));
    assert_eq!(ok("5u"), Some(Duration::from_micros(5)));
    assert_eq!(ok("1H"), Some(Duration::from_secs(3600)));
    assert_eq!(
        ok("99999999H"),
        Some(Duration::from_secs(99_999_999 * 3600))
    );
    for bad in [
        "x",
        "10",
        "S",
        "18446744073709551615S",
        "123456789S",
        "-1S",
        "+5S",
        "1s",
    ] {
        let e = deadline(bad).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
        assert!(
            e.message().contains("grpc-timeout"),
            "{bad}: {}",
            e.message()
        );
    }
}
