//! Triton's model configuration and statistics messages, filled from the
//! core's view of a model (the same facts the HTTP face renders as JSON).

use inferd_core::config::VersionPolicy;
use inferd_core::stats::{StatsSnapshot, Timed};
use inferd_core::{DataType, ModelInfo, SpecType, TensorSpec};

use crate::pb;
use crate::pb::model_version_policy::{All, Latest, PolicyChoice, Specific};

/// Triton's config enum; BYTES is `TYPE_STRING` there, and a spec that takes
/// any datatype has no value but `TYPE_INVALID`.
fn data_type(t: SpecType) -> pb::DataType {
    let SpecType::Is(d) = t else {
        return pb::DataType::TypeInvalid;
    };
    match d {
        DataType::Bool => pb::DataType::TypeBool,
        DataType::U8 => pb::DataType::TypeUint8,
        DataType::U16 => pb::DataType::TypeUint16,
        DataType::U32 => pb::DataType::TypeUint32,
        DataType::U64 => pb::DataType::TypeUint64,
        DataType::I8 => pb::DataType::TypeInt8,
        DataType::I16 => pb::DataType::TypeInt16,
        DataType::I32 => pb::DataType::TypeInt32,
        DataType::I64 => pb::DataType::TypeInt64,
        DataType::F16 => pb::DataType::TypeFp16,
        DataType::BF16 => pb::DataType::TypeBf16,
        DataType::F32 => pb::DataType::TypeFp32,
        DataType::F64 => pb::DataType::TypeFp64,
        DataType::Bytes => pb::DataType::TypeString,
    }
}

/// With batching on, Triton's `dims` leave out the batch dimension.
fn dims(s: &TensorSpec, batching: bool) -> Vec<i64> {
    let mut dims = s.shape_or_any();
    if batching && !dims.is_empty() {
        dims.remove(0);
    }
    dims
}

pub fn model_config(info: &ModelInfo) -> pb::ModelConfig {
    let c = &info.config;
    let batching = c.max_batch_size > 0;
    let policy = match &c.version_policy {
        VersionPolicy::Latest(n) => PolicyChoice::Latest(Latest {
            num_versions: *n as u32,
        }),
        VersionPolicy::All => PolicyChoice::All(All {}),
        VersionPolicy::Specific(v) => PolicyChoice::Specific(Specific {
            versions: v.iter().map(|&v| v as i64).collect(),
        }),
    };
    pb::ModelConfig {
        name: info.name.clone(),
        platform: c.platform.clone(),
        backend: c.backend.clone(),
        version_policy: Some(pb::ModelVersionPolicy {
            policy_choice: Some(policy),
        }),
        max_batch_size: c.max_batch_size as i32,
        input: info
            .inputs
            .iter()
            .map(|s| pb::ModelInput {
                name: s.name.clone(),
                data_type: data_type(s.datatype) as i32,
                dims: dims(s, batching),
            })
            .collect(),
        output: info
            .outputs
            .iter()
            .map(|s| pb::ModelOutput {
                name: s.name.clone(),
                data_type: data_type(s.datatype) as i32,
                dims: dims(s, batching),
                label_filename: c.labels.clone().unwrap_or_default(),
            })
            .collect(),
        dynamic_batching: batching.then(|| pb::ModelDynamicBatching {
            max_queue_delay_microseconds: c.max_queue_delay.as_micros() as u64,
            default_queue_policy: Some(pb::ModelQueuePolicy {
                max_queue_size: c.max_queue as u32,
            }),
        }),
        instance_group: vec![pb::ModelInstanceGroup {
            name: info.name.clone(),
            kind: pb::model_instance_group::Kind::Cpu as i32,
            count: c.instances as i32,
        }],
        parameters: c
            .parameters
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    pb::ModelParameter {
                        string_value: v.clone(),
                    },
                )
            })
            .collect(),
    }
}

fn duration(t: Timed) -> Option<pb::StatisticDuration> {
    Some(pb::StatisticDuration {
        count: t.count,
        ns: t.ns,
    })
}

pub fn statistics(name: &str, version: u64, s: &StatsSnapshot) -> pb::ModelStatistics {
    let zero = || duration(Timed::default());
    pb::ModelStatistics {
        name: name.to_string(),
        version: version.to_string(),
        last_inference: s.last_inference_ms,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(pb::InferStatistics {
            success: duration(s.success),
            fail: duration(s.fail),
            queue: duration(s.queue),
            compute_input: zero(),
            compute_infer: duration(s.compute),
            compute_output: zero(),
            cache_hit: zero(),
            cache_miss: zero(),
        }),
        batch_stats: s
            .batches
            .iter()
            .map(|(&size, &t)| pb::InferBatchStatistics {
                batch_size: size as u64,
                compute_input: zero(),
                compute_infer: duration(t),
                compute_output: zero(),
            })
            .collect(),
    }
}
