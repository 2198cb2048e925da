//! The image-classification task over tensor models: images in (PNG or JPEG
//! bytes), top-k `{class, confidence}` out, with the preprocessing and labels a
//! model's `model.toml` declares. Sizes are checked before pixels are decoded,
//! so a huge image costs nothing.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ImageReader, Limits};

use crate::config::{Channels, ImageSpec, Layout};
use crate::error::{CoreError, CoreResult};
use crate::tensor::{Tensor, TensorData};

/// Largest accepted image side, in pixels.
pub const MAX_SIDE: u32 = 4096;

/// One predicted class.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub class: String,
    pub index: usize,
    pub confidence: f32,
}

fn decode(index: usize, bytes: &[u8]) -> CoreResult<DynamicImage> {
    let bad = |reason: String| CoreError::BadImage { index, reason };
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    if reader.format().is_none() {
        return Err(bad("not a PNG or JPEG image".into()));
    }
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| bad(format!("cannot read the image header: {e}")))?;
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(CoreError::ImageTooLarge {
            index,
            width,
            height,
            max: MAX_SIDE,
        });
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    // The largest buffer a MAX_SIDE image of 8-bit RGBA needs.
    limits.max_alloc = Some(u64::from(MAX_SIDE) * u64::from(MAX_SIDE) * 4);
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| bad(format!("cannot decode: {e}")))
}

/// Decodes and preprocesses images into one input tensor `[N, ...]`.
pub fn images_to_tensor(spec: &ImageSpec, input: &str, images: &[Vec<u8>]) -> CoreResult<Tensor> {
    let (w, h) = (spec.width, spec.height);
    let channels = spec.channels.count();
    let per_image = spec.elements_per_image();
    // Grown image by image: sized from what was decoded, never from the count.
    let mut data = Vec::new();
    for (index, bytes) in images.iter().enumerate() {
        let img = decode(index, bytes)?.resize_exact(w, h, FilterType::Triangle);
        let pixels: Vec<u8> = match spec.channels {
            Channels::Gray => img.to_luma8().into_raw(),
            Channels::Rgb => img.to_rgb8().into_raw(),
        };
        let value = |p: u8| {
            let p = if spec.invert { 255 - p } else { p };
            f32::from(p) / 255.0 * spec.scale
        };
        match spec.layout {
            Layout::Flat | Layout::Nhwc => data.extend(pixels.iter().map(|&p| value(p))),
            Layout::Nchw => {
                for c in 0..channels {
                    data.extend(pixels.iter().skip(c).step_by(channels).map(|&p| value(p)));
                }
            }
        }
    }
    let n = images.len();
    let shape = match spec.layout {
        Layout::Flat => vec![n, per_image],
        Layout::Nchw => vec![n, channels, h as usize, w as usize],
        Layout::Nhwc => vec![n, h as usize, w as usize, channels],
    };
    Tensor::new(input, shape, TensorData::F32(data))
}

/// The `k` best classes of each row of a score tensor `[N, classes]`.
pub fn top_k(
    model: &str,
    scores: &Tensor,
    labels: &[String],
    k: usize,
) -> CoreResult<Vec<Vec<Label>>> {
    let row: Vec<f32> = match scores.data() {
        TensorData::F32(v) => v.clone(),
        TensorData::F64(v) => v.iter().map(|&x| x as f32).collect(),
        other => {
            return Err(CoreError::UnsupportedTask {
                model: model.into(),
                task: "image-classification".into(),
                reason: format!("its score output is {}, not FP32", other.datatype()),
            })
        }
    };
    let classes = scores.shape().last().copied().unwrap_or(0).max(1);
    Ok(row
        .chunks(classes)
        .map(|scores| {
            let mut ranked: Vec<(usize, f32)> = scores.iter().copied().enumerate().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            ranked
                .into_iter()
                .take(k.max(1))
                .map(|(index, confidence)| Label {
                    class: labels
                        .get(index)
                        .cloned()
                        .unwrap_or_else(|| index.to_string()),
                    index,
                    confidence,
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use image::{GrayImage, ImageFormat, Luma};

    use super::*;

    fn png(width: u32, height: u32, value: u8) -> Vec<u8> {
        let img = GrayImage::from_pixel(width, height, Luma([value]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn spec() -> ImageSpec {
        ImageSpec {
            width: 2,
            height: 2,
            channels: Channels::Gray,
            invert: true,
            scale: 1.0,
            layout: Layout::Flat,
            output: None,
        }
    }

    #[test]
    fn images_are_resized_inverted_and_scaled() {
        let t = images_to_tensor(&spec(), "x", &[png(4, 4, 255), png(3, 5, 0)]).unwrap();
        assert_eq!(t.shape(), &[2, 4]);
        assert_eq!(
            t.data(),
            &TensorData::F32(vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
        );
    }

    #[test]
    fn bad_and_huge_images_are_refused_before_decoding() {
        let err = images_to_tensor(&spec(), "x", &[b"not an image".to_vec()]).unwrap_err();
        assert!(err.to_string().contains("image 0"), "{err}");
        let huge = png(MAX_SIDE + 1, 1, 0);
        let err = images_to_tensor(&spec(), "x", &[huge]).unwrap_err();
        assert!(matches!(err, CoreError::ImageTooLarge { .. }), "{err}");
    }

    #[test]
    fn top_k_ranks_with_labels() {
        let scores = Tensor::new("p", vec![1, 3], TensorData::F32(vec![0.1, 0.7, 0.2])).unwrap();
        let labels = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let top = top_k("m", &scores, &labels, 2).unwrap();
        assert_eq!(top[0][0].class, "b");
        assert_eq!(top[0][1].class, "c");
        assert_eq!(top[0].len(), 2);
    }
}
