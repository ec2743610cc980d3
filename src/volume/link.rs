//! Linking per-slice boxes into 3D objects across z (a small IoU tracker along the slice axis).
//!
//! Input: for each detected slice `z`, the boxes the 2D detector found there.
//! Output: one [`Object3d`] per organelle, holding the box it has on every slice it was linked on.
//!
//! # Algorithm
//! Slices are visited in increasing `z`. A *track* is an object under construction; it remembers
//! its last box and the slice that box is on. On slice `z`:
//!
//! 1. Tracks whose last box is too far back are closed. "Too far" is measured in **detected**
//!    slices: with detection on every `stride`-th slice, a track whose last box is on `z_last` may
//!    continue on `z` when `z - z_last <= (max_gap + 1) * stride`, i.e. when at most `max_gap`
//!    detected slices in between had no box for it.
//! 2. Every (open track, box) pair of the **same class** with
//!    `IoU(track's last box, box) >= iou_threshold` (and IoU > 0) is a candidate link.
//! 3. Candidates are accepted **greedily by IoU**, one-to-one (a track takes at most one box per
//!    slice, a box continues at most one track). Order: IoU descending; ties broken by the
//!    smaller gap `z - z_last` (the more recently seen track), then the older track (lower
//!    creation index), then the box that comes first in the canonical box order (class, x1, y1,
//!    x2, y2, score descending — so the input order of boxes does not matter).
//!    Greedy is chosen over an optimal (Hungarian) assignment because organelles of one class
//!    rarely overlap enough for the two to differ at `IoU >= 0.3`, and greedy makes the tie rules
//!    explicit and easy to audit.
//! 4. **Split** (one track overlaps several boxes): the track continues with the box it overlaps
//!    most; every other box (the weaker branch) starts a new object.
//!    **Merge** (several tracks overlap one box): the box continues the track that overlaps it
//!    most; a track that lost its only candidate this way (the weaker track) is *ended* here — it
//!    is not kept open for bridging, since its organelle now belongs to the stronger track.
//!    A track that simply has no candidate stays open (a missed detection) for `max_gap`
//!    detected slices.
//! 5. Boxes that continue no track start new tracks.
//!
//! Finally tracks with fewer than `min_slices` boxes are dropped, each remaining track becomes an
//! [`Object3d`], objects are sorted by `z1`, then `x1` (then `y1`, class, `z2`, `x2`, `y2`, score,
//! all with `f32::total_cmp`, so the order is total) and numbered `id = 1, 2, ...` in that order
//! (0 is left free for "background" in a label volume and IMOD numbers from 1).
//!
//! Boxes with a non-finite coordinate or score are ignored.

use std::collections::BTreeMap;

use crate::detection::nms;

/// One detection on one slice: `bbox` is `(x1, y1, x2, y2)` in pixel coordinates of the slice
/// (torchvision convention: pixel `i` covers `[i, i + 1)`, width `x2 - x1`, no `+1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SliceBox {
    pub bbox: [f32; 4],
    pub score: f32,
    pub class_id: usize,
}

/// Parameters of [`link_slices`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Minimum 2D IoU between a track's last box and a box on a later slice for the two to be
    /// linked. Default **0.3**: cross-sections of a roughly ellipsoidal organelle shrink quickly
    /// near its poles (two concentric squares of sides `a < b` have IoU `(a/b)^2`, so 0.3 still
    /// links a cross-section to one 1.8x its size), while two distinct neighbouring organelles
    /// seldom overlap that much.
    pub iou_threshold: f32,
    /// Number of consecutive detected slices without a box that a track may bridge. Default 2.
    pub max_gap: usize,
    /// Objects linked on fewer detected slices than this are dropped. Default 1 (keep all).
    pub min_slices: usize,
    /// Detection ran on every `stride`-th slice (z = 0, K, 2K, ...); gaps are counted in detected
    /// slices, so a track may skip `(max_gap + 1) * stride` in z. Default 1; 0 is treated as 1.
    pub stride: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            iou_threshold: 0.3,
            max_gap: 2,
            min_slices: 1,
            stride: 1,
        }
    }
}

/// One organelle in 3D.
#[derive(Debug, Clone, PartialEq)]
pub struct Object3d {
    /// 1-based number in the sorted output of [`link_slices`] (0 means background elsewhere).
    pub id: usize,
    pub class_id: usize,
    /// `(x1, y1, z1, x2, y2, z2)`: x/y are the union (min/max) of the linked slice boxes;
    /// `z1` is the first linked slice and `z2` is **exclusive**: last linked slice + 1.
    /// With `stride > 1` the true extent may reach up to `stride - 1` slices further each way.
    pub bbox3d: [f32; 6],
    /// The linked boxes, one per slice, in increasing `z` (bridged gaps and slices skipped by
    /// the stride have no entry; [`Object3d::box_at`] interpolates them).
    pub slices: Vec<(usize, SliceBox)>,
    /// Mean of the per-slice scores.
    pub score: f32,
    /// The object has a box on the first slice of the input (it may continue outside the stack).
    pub touches_first: bool,
    /// The object has a box on the last slice of the input (it may continue outside the stack).
    pub touches_last: bool,
}

impl Object3d {
    /// Number of slices with a linked box.
    pub fn n_slices(&self) -> usize {
        self.slices.len()
    }

    /// The object's box on slice `z`: the linked box if there is one, otherwise (inside a bridged
    /// gap or between strided slices) the linear interpolation of the linked boxes before and
    /// after, `b(z) = b0 + (z - z0) / (z1 - z0) * (b1 - b0)`; `None` outside `[z1, z2)`.
    pub fn box_at(&self, z: usize) -> Option<[f32; 4]> {
        let i = match self.slices.binary_search_by_key(&z, |(zz, _)| *zz) {
            Ok(i) => return Some(self.slices[i].1.bbox),
            Err(i) => i,
        };
        if i == 0 || i == self.slices.len() {
            return None;
        }
        let (z0, b0) = (self.slices[i - 1].0, self.slices[i - 1].1.bbox);
        let (z1, b1) = (self.slices[i].0, self.slices[i].1.bbox);
        let t = (z - z0) as f32 / (z1 - z0) as f32;
        Some(std::array::from_fn(|k| b0[k] + t * (b1[k] - b0[k])))
    }

    /// Whether slice `z` has a linked (detected, not interpolated) box.
    pub fn is_linked_slice(&self, z: usize) -> bool {
        self.slices.binary_search_by_key(&z, |(zz, _)| *zz).is_ok()
    }
}

/// 3D IoU of boxes `(x1, y1, z1, x2, y2, z2)` (z2 exclusive, so a box on one slice has depth 1):
/// `|A ∩ B| / |A ∪ B|` with `|A| = (x2 - x1)(y2 - y1)(z2 - z1)`; 0 when the union is empty.
pub fn iou3d(a: &[f32; 6], b: &[f32; 6]) -> f32 {
    let side = |k: usize| (a[k + 3].min(b[k + 3]) - a[k].max(b[k])).max(0.0);
    let inter = side(0) * side(1) * side(2);
    let vol =
        |r: &[f32; 6]| (r[3] - r[0]).max(0.0) * (r[4] - r[1]).max(0.0) * (r[5] - r[2]).max(0.0);
    let union = vol(a) + vol(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// A track under construction.
struct Track {
    class_id: usize,
    boxes: Vec<(usize, SliceBox)>,
}

impl Track {
    fn last(&self) -> (usize, &SliceBox) {
        let (z, b) = self.boxes.last().expect("a track is created with one box");
        (*z, b)
    }
}

/// Canonical order of the boxes of one slice: class, x1, y1, x2, y2, then score descending.
fn canonical_cmp(a: &SliceBox, b: &SliceBox) -> std::cmp::Ordering {
    a.class_id
        .cmp(&b.class_id)
        .then_with(|| {
            a.bbox
                .iter()
                .zip(&b.bbox)
                .map(|(p, q)| p.total_cmp(q))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .then_with(|| b.score.total_cmp(&a.score))
}

/// Links per-slice boxes into 3D objects; see the module documentation for the exact rules.
///
/// `slices`: `(z, boxes on slice z)`, in any order; entries with the same `z` are merged. Pass
/// every detected slice, also those without boxes: the first and last `z` given define the
/// stack's extent for [`Object3d::touches_first`] / [`Object3d::touches_last`].
pub fn link_slices(slices: &[(usize, Vec<SliceBox>)], cfg: &LinkConfig) -> Vec<Object3d> {
    let mut by_z: BTreeMap<usize, Vec<SliceBox>> = BTreeMap::new();
    for (z, boxes) in slices {
        let finite = |b: &&SliceBox| b.bbox.iter().all(|v| v.is_finite()) && b.score.is_finite();
        by_z.entry(*z)
            .or_default()
            .extend(boxes.iter().filter(finite).copied());
    }
    let (Some(&z_first), Some(&z_last)) = (by_z.keys().next(), by_z.keys().next_back()) else {
        return Vec::new();
    };
    let reach = cfg
        .max_gap
        .saturating_add(1)
        .saturating_mul(cfg.stride.max(1));

    let mut tracks: Vec<Track> = Vec::new();
    let mut open: Vec<usize> = Vec::new(); // indices into `tracks`, in creation order
    for (&z, boxes) in by_z.iter_mut() {
        boxes.sort_by(canonical_cmp);
        open.retain(|&t| z - tracks[t].last().0 <= reach);

        // Candidate links (iou, gap, track, box), best first.
        let mut cands: Vec<(f32, usize, usize, usize)> = Vec::new();
        for &t in &open {
            let (z_prev, last) = tracks[t].last();
            for (b, sb) in boxes.iter().enumerate() {
                if sb.class_id != tracks[t].class_id {
                    continue;
                }
                // torchvision's IoU; NaN for two empty boxes, which the test below rejects.
                let iou = nms::iou(&last.bbox, &sb.bbox);
                if iou > 0.0 && iou >= cfg.iou_threshold {
                    cands.push((iou, z - z_prev, t, b));
                }
            }
        }
        cands.sort_by(|p, q| {
            q.0.total_cmp(&p.0)
                .then(p.1.cmp(&q.1))
                .then(p.2.cmp(&q.2))
                .then(p.3.cmp(&q.3))
        });

        let mut box_taken = vec![false; boxes.len()];
        let mut continued = vec![false; tracks.len()];
        let mut lost_to_merge = vec![false; tracks.len()];
        for &(_, _, t, b) in &cands {
            if continued[t] {
                continue; // a split if `b` stays free: it starts a new track below
            }
            if box_taken[b] {
                lost_to_merge[t] = true; // its box went to a stronger track
            } else {
                tracks[t].boxes.push((z, boxes[b]));
                box_taken[b] = true;
                continued[t] = true;
            }
        }
        open.retain(|&t| continued[t] || !lost_to_merge[t]);

        for (b, sb) in boxes.iter().enumerate() {
            if !box_taken[b] {
                open.push(tracks.len());
                tracks.push(Track {
                    class_id: sb.class_id,
                    boxes: vec![(z, *sb)],
                });
            }
        }
    }

    let mut objects: Vec<Object3d> = tracks
        .into_iter()
        .filter(|t| t.boxes.len() >= cfg.min_slices)
        .map(|t| to_object(t, z_first, z_last))
        .collect();
    objects.sort_by(|a, b| {
        let (p, q) = (&a.bbox3d, &b.bbox3d);
        p[2].total_cmp(&q[2])
            .then(p[0].total_cmp(&q[0]))
            .then(p[1].total_cmp(&q[1]))
            .then(a.class_id.cmp(&b.class_id))
            .then(p[5].total_cmp(&q[5]))
            .then(p[3].total_cmp(&q[3]))
            .then(p[4].total_cmp(&q[4]))
            .then(b.score.total_cmp(&a.score))
    });
    for (i, o) in objects.iter_mut().enumerate() {
        o.id = i + 1;
    }
    objects
}

fn to_object(t: Track, z_first: usize, z_last: usize) -> Object3d {
    let first_z = t.boxes[0].0;
    let last_z = t.last().0;
    let mut xy = [
        f32::INFINITY,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NEG_INFINITY,
    ];
    let mut score_sum = 0.0f64;
    for (_, b) in &t.boxes {
        xy[0] = xy[0].min(b.bbox[0]);
        xy[1] = xy[1].min(b.bbox[1]);
        xy[2] = xy[2].max(b.bbox[2]);
        xy[3] = xy[3].max(b.bbox[3]);
        score_sum += b.score as f64;
    }
    Object3d {
        id: 0,
        class_id: t.class_id,
        bbox3d: [
            xy[0],
            xy[1],
            first_z as f32,
            xy[2],
            xy[3],
            (last_z + 1) as f32,
        ],
        score: (score_sum / t.boxes.len() as f64) as f32,
        touches_first: first_z == z_first,
        touches_last: last_z == z_last,
        slices: t.boxes,
    }
}
