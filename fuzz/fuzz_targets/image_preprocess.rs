//! Image preprocessing for image-classification models: format sniffing,
//! the size check before decode, decode, resize, channels and layout.
//!
//! Input: byte 0 holds the spec's flags (bit 0 RGB, bit 1 invert, bits 2-3 the
//! layout), bytes 1 and 2 its width and height (1..=16), the rest is the image.
#![no_main]

use inferd_core::classify::images_to_tensor;
use inferd_core::config::ImageSpec;
use inferd_core::TensorData;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let [flags, w, h, image @ ..] = data else {
        return;
    };
    let channels = if flags & 1 == 0 { "gray" } else { "rgb" };
    let layout = ["flat", "nchw", "nhwc"][(flags >> 2) as usize % 3];
    let (width, height) = (u32::from(w % 16) + 1, u32::from(h % 16) + 1);
    let spec: ImageSpec = serde_json::from_value(json!({
        "width": width,
        "height": height,
        "channels": channels,
        "invert": flags & 2 != 0,
        "layout": layout,
    }))
    .expect("a valid image spec");
    let Ok(tensor) = images_to_tensor(&spec, "input", &[image.to_vec()]) else {
        return;
    };
    let per_image = (width * height) as usize * if flags & 1 == 0 { 1 } else { 3 };
    assert_eq!(tensor.shape().iter().product::<usize>(), per_image);
    let TensorData::F32(values) = tensor.data() else {
        panic!("images become FP32");
    };
    assert!(
        values.iter().all(|v| (0.0..=1.0).contains(v)),
        "pixels scale to 0..1"
    );
});
