//! Anchor boxes of the RPN, as torchvision's `AnchorGenerator`
//! (torchvision/models/detection/anchor_utils.py, one feature level).
//!
//! Base (zero-centred) anchors, for ratio r = h / w and size s:
//!
//! ```text
//! h_ratio = sqrt(r),  w_ratio = 1 / h_ratio          (f32)
//! ws = w_ratio * s,   hs = h_ratio * s
//! base = round([-ws, -hs, ws, hs] / 2)               (round half to even, like torch.round)
//! ```
//!
//! enumerated ratio-major, size-minor (`(w_ratios[:, None] * scales[None, :]).view(-1)`), so the
//! default generator gives, for r = 0.5, 1, 2 in turn, the sizes 128, 256, 512.
//!
//! Grid anchors: cell (y, x) of an `feat_h x feat_w` map is shifted by
//! `(x * stride_w, y * stride_h)` — no half-cell offset — with
//! `stride = image_size / feature_size` in integer division. Rows of the result are
//! `(y * feat_w + x) * A + a`: cells in row-major order, the A anchors of a cell together. The RPN
//! head's outputs are flattened in the same (H, W, A) order.
//!
//! All boxes are `[N, 4]` as `(x1, y1, x2, y2)` in input-image pixels.

use ndarray::Array2;

/// Anchor sizes (square-root of the area, in pixels) and aspect ratios (h / w) of one feature level.
#[derive(Clone, Debug, PartialEq)]
pub struct AnchorGenerator {
    pub sizes: Vec<f32>,
    pub ratios: Vec<f32>,
}

impl Default for AnchorGenerator {
    /// torchvision's Faster R-CNN C4 default: sizes (128, 256, 512), ratios (0.5, 1, 2).
    fn default() -> Self {
        AnchorGenerator {
            sizes: vec![128.0, 256.0, 512.0],
            ratios: vec![0.5, 1.0, 2.0],
        }
    }
}

/// Metadata key of the anchor sizes (comma-separated pixels at the network input).
pub const SIZES_KEY: &str = "anchor_sizes";
/// Metadata key of the anchor aspect ratios (comma-separated h / w).
pub const RATIOS_KEY: &str = "anchor_ratios";
/// Sizes of new models (`cryodet train --anchor-sizes`): the study's 128/256/512 plus 32 and 64,
/// so that objects of 32 to ~600 px at the network input have an anchor within a factor ~1.4.
pub const NEW_MODEL_SIZES: [f32; 5] = [32.0, 64.0, 128.0, 256.0, 512.0];

/// A comma-separated list of positive finite numbers ("32,64,128").
pub fn parse_list(text: &str) -> std::result::Result<Vec<f32>, String> {
    let v: Vec<f32> = text
        .split(',')
        .map(|t| t.trim().parse::<f32>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!("{text:?} is not a comma-separated list of numbers"))?;
    if v.is_empty() || v.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
        return Err(format!("{text:?}: every value must be a positive number"));
    }
    Ok(v)
}

fn format_list(v: &[f32]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl AnchorGenerator {
    /// The anchors recorded in a weight file's metadata ([`SIZES_KEY`], [`RATIOS_KEY`]); a
    /// missing key takes the default's value, both missing gives `Ok(None)` (old files: the
    /// default 128/256/512 x 0.5/1/2). A malformed value is an error (its reason).
    pub fn from_metadata(
        meta: &std::collections::HashMap<String, String>,
    ) -> std::result::Result<Option<Self>, String> {
        let (sizes, ratios) = (meta.get(SIZES_KEY), meta.get(RATIOS_KEY));
        if sizes.is_none() && ratios.is_none() {
            return Ok(None);
        }
        let d = AnchorGenerator::default();
        let parse = |key: &str, v: Option<&String>, dflt: Vec<f32>| match v {
            None => Ok(dflt),
            Some(t) => parse_list(t).map_err(|e| format!("metadata `{key}`: {e}")),
        };
        Ok(Some(AnchorGenerator {
            sizes: parse(SIZES_KEY, sizes, d.sizes)?,
            ratios: parse(RATIOS_KEY, ratios, d.ratios)?,
        }))
    }

    /// The metadata entries that [`AnchorGenerator::from_metadata`] reads back.
    pub fn to_metadata(&self) -> [(String, String); 2] {
        [
            (SIZES_KEY.to_string(), format_list(&self.sizes)),
            (RATIOS_KEY.to_string(), format_list(&self.ratios)),
        ]
    }

    /// "sizes 32,64 x ratios 0.5,1,2" for messages.
    pub fn describe(&self) -> String {
        format!(
            "sizes {} x ratios {}",
            format_list(&self.sizes),
            format_list(&self.ratios)
        )
    }

    /// A = len(sizes) * len(ratios): anchors per feature-map cell.
    pub fn num_anchors(&self) -> usize {
        self.sizes.len() * self.ratios.len()
    }

    /// The A zero-centred anchors `[A, 4]`, ratio-major then size (torchvision `generate_anchors`).
    pub fn base_anchors(&self) -> Array2<f32> {
        let mut base = Array2::<f32>::zeros((self.num_anchors(), 4));
        let mut row = 0;
        for &r in &self.ratios {
            let h_ratio = r.sqrt();
            let w_ratio = 1.0 / h_ratio;
            for &s in &self.sizes {
                let ws = w_ratio * s;
                let hs = h_ratio * s;
                let corners = [-ws, -hs, ws, hs];
                for (k, v) in corners.iter().enumerate() {
                    base[[row, k]] = (v / 2.0).round_ties_even();
                }
                row += 1;
            }
        }
        base
    }

    /// All anchors of a `feat_h x feat_w` map, `[feat_h * feat_w * A, 4]`, row
    /// `(y * feat_w + x) * A + a` = base anchor `a` shifted by `(x * stride_w, y * stride_h)`
    /// (torchvision `grid_anchors`; the shift is an integer, added to the f32 base anchor).
    pub fn grid_anchors(
        &self,
        feat_h: usize,
        feat_w: usize,
        stride_h: usize,
        stride_w: usize,
    ) -> Array2<f32> {
        let base = self.base_anchors();
        let a_count = base.nrows();
        let mut out = Array2::<f32>::zeros((feat_h * feat_w * a_count, 4));
        for y in 0..feat_h {
            let sy = (y * stride_h) as f32;
            for x in 0..feat_w {
                let sx = (x * stride_w) as f32;
                let shift = [sx, sy, sx, sy];
                let cell = (y * feat_w + x) * a_count;
                for a in 0..a_count {
                    for k in 0..4 {
                        out[[cell + a, k]] = shift[k] + base[[a, k]];
                    }
                }
            }
        }
        out
    }
}

/// Stride between anchor centres along one axis: `image_size // feature_size` (torchvision
/// `AnchorGenerator.forward`), e.g. 211 // 13 = 16, 275 // 17 = 16. A zero `feature_size`
/// (no feature cells) gives stride 0 instead of a division by zero; such a map has no anchors.
pub fn feature_stride(image_size: usize, feature_size: usize) -> usize {
    image_size.checked_div(feature_size).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_base_anchors_are_ratio_major() {
        let b = AnchorGenerator::default().base_anchors();
        // r = 0.5, s = 128: w = 128 / sqrt(0.5) = 181.02, h = 90.51 -> (-91, -45, 91, 45).
        assert_eq!(b.row(0).to_vec(), vec![-91.0, -45.0, 91.0, 45.0]);
        // r = 1, s = 256 is row 4.
        assert_eq!(b.row(4).to_vec(), vec![-128.0, -128.0, 128.0, 128.0]);
    }

    #[test]
    fn grid_order_is_cell_major() {
        let g = AnchorGenerator {
            sizes: vec![8.0],
            ratios: vec![1.0, 2.0],
        };
        let a = g.grid_anchors(2, 3, 16, 10);
        assert_eq!(a.nrows(), 12);
        // Cell (y=1, x=2) anchor 1 is row (1 * 3 + 2) * 2 + 1 = 11, shifted by (20, 16).
        let base = g.base_anchors();
        assert_eq!(a[[11, 0]], base[[1, 0]] + 20.0);
        assert_eq!(a[[11, 1]], base[[1, 1]] + 16.0);
    }
}
