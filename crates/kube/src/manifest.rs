//! The InferenceService a service record becomes, and the phase an
//! InferenceService's status says it is in.

use inferd_services::{Observed, Phase};
use inferd_store::{now, time, ServiceRecord};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::DynamicObject;
use serde_json::{json, Map, Value};

use crate::{INSTANCE, MANAGED_BY};

/// KServe's annotation that scales an InferenceService to nothing (and back
/// when it is `"false"` or gone).
pub const STOP_ANNOTATION: &str = "serving.kserve.io/stop";

/// The `modelFormat` the `inferd` ClusterServingRuntime lists for a backend
/// (deploy/kserve); a framework inferd does not run is passed on as asked, and
/// KServe refuses it in the status, as it would for any runtime.
pub fn model_format(framework: &str) -> String {
    match framework.to_ascii_lowercase().as_str() {
        "onnx" => "onnx".into(),
        "llama.cpp" | "gguf" => "gguf".into(),
        "candle" | "onnxruntime" | "sentence-transformers" => "sentence-transformers".into(),
        "builtin" | "inferd" => "inferd".into(),
        other => other.into(),
    }
}

/// A CPU count as a Kubernetes quantity: whole cores as an integer,
/// fractions in millicores.
fn cpu_quantity(cpu: f64) -> String {
    if cpu.fract() == 0.0 {
        format!("{}", cpu as u64)
    } else {
        format!("{}m", (cpu * 1000.0).round() as u64)
    }
}

pub(crate) fn inference_service(
    rec: &ServiceRecord,
    namespace: &str,
    prefix: &str,
    instance: &str,
) -> Value {
    let mut resources = Map::new();
    if rec.cpu > 0.0 {
        resources.insert("cpu".into(), json!(cpu_quantity(rec.cpu)));
    }
    if rec.memory > 0 {
        resources.insert("memory".into(), json!(rec.memory.to_string()));
    }
    let mut limits = resources.clone();
    if rec.gpu > 0 {
        limits.insert("nvidia.com/gpu".into(), json!(rec.gpu.to_string()));
    }
    json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": rec.id,
            "namespace": namespace,
            "labels": {
                MANAGED_BY.0: MANAGED_BY.1,
                INSTANCE: instance,
                "inferd.io/service": rec.id,
            },
            "annotations": {
                "serving.kserve.io/deploymentMode": "RawDeployment",
                STOP_ANNOTATION: "false",
                "inferd.io/name": rec.name,
                "inferd.io/model": format!("{}:{}", rec.model, rec.model_version),
            },
        },
        "spec": {
            "predictor": {
                // A new value on each deploy rolls the pods, so a start after
                // a failed load tries again even with an unchanged spec.
                "annotations": {"inferd.io/deployed-at": time::rfc3339(now())},
                "minReplicas": rec.replicas,
                "maxReplicas": rec.replicas,
                "model": {
                    "modelFormat": {"name": model_format(&rec.framework)},
                    "runtime": "inferd",
                    "storageUri": format!(
                        "{}/{}/{}",
                        prefix.trim_end_matches('/'),
                        rec.model,
                        rec.model_version
                    ),
                    "resources": {"requests": resources, "limits": limits},
                },
            },
        },
    })
}

/// The phase KServe reports. A stop is reached when `Stopped` is true (a
/// KServe before 0.15, which ignores the annotation, never gets there, and
/// the service stays `stopping`: nothing was stopped). `Ready` wins over a
/// failed load, which KServe reads from one pod only.
pub(crate) fn observed(object: &DynamicObject) -> Observed {
    let stop_requested = object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STOP_ANNOTATION))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let status = &object.data["status"];
    let condition = |kind: &str| {
        status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == kind)
    };
    let is_true = |kind: &str| condition(kind).is_some_and(|c| c["status"] == "True");
    let model = &status["modelStatus"];
    let blocked = matches!(
        model["transitionStatus"].as_str(),
        Some("BlockedByFailedLoad" | "InvalidSpec")
    );
    let phase = if stop_requested {
        if is_true("Stopped") {
            Phase::Stopped
        } else {
            Phase::Progressing
        }
    } else if is_true("Ready") {
        Phase::Ready
    } else if blocked {
        let said = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
        let why = said(&model["lastFailureInfo"]["message"])
            .or_else(|| condition("Ready").and_then(|c| said(&c["message"])))
            .unwrap_or_else(|| {
                format!(
                    "KServe reports {}",
                    model["transitionStatus"].as_str().unwrap_or_default()
                )
            });
        let since = serde_json::from_value::<Time>(model["lastFailureInfo"]["time"].clone())
            .ok()
            .map(|t| t.0.as_millisecond() as f64 / 1000.0);
        Phase::Failed { reason: why, since }
    } else {
        Phase::Progressing
    };
    Observed {
        phase,
        stop_requested,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferd_store::ServiceStatus;

    fn record() -> ServiceRecord {
        ServiceRecord {
            id: "svc-0123456789ab".into(),
            name: "flowers".into(),
            description: String::new(),
            workspace_id: None,
            model: "iris".into(),
            model_version: 1,
            framework: "onnx".into(),
            cpu: 0.5,
            memory: 17179869184,
            gpu: 1,
            replicas: 2,
            status: ServiceStatus::Creating,
            reason: None,
            created_at: 0.0,
            updated_at: 0.0,
            sent: None,
        }
    }

    fn object(annotations: Value, status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "svc-0123456789ab", "annotations": annotations},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_record_becomes_a_raw_deployment_on_the_inferd_runtime() {
        let isvc = inference_service(&record(), "ml", "s3://models/", "0123");
        assert_eq!(isvc["metadata"]["namespace"], "ml");
        assert_eq!(isvc["metadata"]["labels"]["inferd.io/instance"], "0123");
        assert_eq!(
            isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"],
            "RawDeployment"
        );
        let predictor = &isvc["spec"]["predictor"];
        assert_eq!(
            (
                predictor["minReplicas"].clone(),
                predictor["maxReplicas"].clone()
            ),
            (json!(2), json!(2))
        );
        let model = &predictor["model"];
        assert_eq!(model["runtime"], "inferd");
        assert_eq!(model["modelFormat"]["name"], "onnx");
        assert_eq!(model["storageUri"], "s3://models/iris/1");
        assert_eq!(
            model["resources"],
            json!({"requests": {"cpu": "500m", "memory": "17179869184"},
                   "limits": {"cpu": "500m", "memory": "17179869184", "nvidia.com/gpu": "1"}})
        );
    }

    #[test]
    fn backends_map_to_the_runtime_s_formats() {
        assert_eq!(model_format("llama.cpp"), "gguf");
        assert_eq!(model_format("candle"), "sentence-transformers");
        assert_eq!(model_format("PyTorch"), "pytorch");
        assert_eq!(cpu_quantity(4.0), "4");
    }

    #[test]
    fn the_status_conditions_give_the_phase() {
        let ready = json!({"conditions": [{"type": "Ready", "status": "True"}]});
        let not_yet = json!({"conditions": [{"type": "Ready", "status": "False", "reason": "PredictorNotReady"}]});
        let failed = json!({"conditions": [{"type": "Ready", "status": "False", "message": "pod crashed"}],
            "modelStatus": {"transitionStatus": "BlockedByFailedLoad",
                            "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "no model.onnx in /mnt/models"}}});
        let stopped = json!({"conditions": [{"type": "Stopped", "status": "True"}, {"type": "Ready", "status": "False"}]});
        let run = json!({STOP_ANNOTATION: "false"});
        let stop = json!({STOP_ANNOTATION: "true"});
        assert_eq!(
            observed(&object(run.clone(), ready.clone())).phase,
            Phase::Ready
        );
        assert_eq!(
            observed(&object(run.clone(), not_yet)).phase,
            Phase::Progressing
        );
        assert_eq!(
            observed(&object(json!({}), json!({}))).phase,
            Phase::Progressing
        );
        assert_eq!(
            observed(&object(run.clone(), failed)).phase,
            Phase::Failed {
                reason: "no model.onnx in /mnt/models".into(),
                since: None
            }
        );
        let dated = json!({"modelStatus": {"transitionStatus": "InvalidSpec",
            "lastFailureInfo": {"message": "no runtime for pytorch", "time": "2026-12-01T10:00:00Z"}}});
        assert_eq!(
            observed(&object(run.clone(), dated)).phase,
            Phase::Failed {
                reason: "no runtime for pytorch".into(),
                since: Some(1_796_119_200.0)
            }
        );
        // One pod's failed load while the service answers: it answers.
        let serving = json!({"conditions": [{"type": "Ready", "status": "True"}],
            "modelStatus": {"transitionStatus": "BlockedByFailedLoad"}});
        assert_eq!(observed(&object(run, serving)).phase, Phase::Ready);
        let stopping = observed(&object(stop.clone(), ready));
        assert_eq!(
            (stopping.phase, stopping.stop_requested),
            (Phase::Progressing, true)
        );
        // Not ready is not stopped: only KServe's Stopped condition says so.
        let starting = observed(&object(
            stop.clone(),
            json!({"conditions": [{"type": "Ready", "status": "False"}]}),
        ));
        assert_eq!(starting.phase, Phase::Progressing);
        assert_eq!(observed(&object(stop, stopped)).phase, Phase::Stopped);
    }
}
