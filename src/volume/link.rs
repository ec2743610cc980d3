//! Linking per-slice boxes into 3D objects across z (a small IoU tracker along the slice axis).
//!
//! Input: for each detected slice `z`, the boxes the 2D detector found there.
//! Output: one [`Object3d`] per organelle, holding the box it has on every slice it was linked on.
//!
//! # Algorithm
//! Slices are visited in increasing `z`. A *track* is an object under construction; it remembers
//! its last box and the slice that box is on. On slice `z`:
//!
//! 0. **Fragments** are dropped ([`suppress_fragments`]): a box lying mostly inside a larger box
//!    of the same class on the same slice (`area(A ∩ B) >= fragment_overlap * area(B)`). A 2D
//!    detector at low SNR often adds boxes on parts of a large organelle next to the box on the
//!    whole; NMS at IoU 0.5 keeps them (a box on half an organelle has IoU ~0.5 with the whole),
//!    and a track that picks up a fragment breaks the column of boxes in two.
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
//! After the last slice, **broken tracks are stitched** (`stitch`): where one organelle got two
//! boxes on a slice, the greedy step may continue it with the wrong one and start it anew a slice
//! later. A track `B` that starts while a track `A` of the same class ends (`B`'s first box is on
//! `A`'s last slice or at most `max_gap` detected slices before it, so that the two coexisted, and
//! `B` ends after `A`) and whose first box overlaps `A`'s last box before `B` began at
//! `IoU >= iou_threshold` continues `A`, provided `B` has at least `max(2, min_slices)` boxes (a
//! lone box is no continuation): `A`'s boxes before `B`'s first slice, then `B`'s.
//! Candidates are accepted greedily by that IoU, each track ending and starting at most one join.
//! A track that ended *before* another began is left alone: bridging gaps is step 1's job, and a
//! track ended by a merge stays ended.
//!
//! Then **pieces are merged** (`merge_pieces`): when the detector loses an organelle for more
//! than `max_gap` slices, or boxes it so differently on neighbouring slices that two or three
//! tracks run side by side, the pieces share their footprint in xy. Two tracks of the same class
//! (each with at least `max(2, min_slices)` boxes) whose footprints overlap at
//! `IoU >= merge_iou` and whose z ranges are at most `merge_max_gap` detected slices apart become
//! one, the most overlapping pair first. Distinct organelles rarely share half of their
//! footprint within a few slices; ones stacked above each other at the same xy would be merged.
//!
//! Finally tracks with fewer than `min_slices` boxes are dropped, each remaining track becomes an
//! [`Object3d`] whose 3D box is the union of its **smoothed** slice boxes ([`smooth_track`]: a
//! running median of each coordinate over `smooth_window` consecutive linked boxes, so that one
//! badly placed box does not widen the whole object), objects are sorted by `z1`, then `x1`
//! (then `y1`, class, `z2`, `x2`, `y2`, score, all with `f32::total_cmp`, so the order is total) and numbered `id = 1, 2, ...` in that order
//! (0 is left free for "background" in a label volume and IMOD numbers from 1).
//!
//! Boxes with a non-finite coordinate or score are ignored.

use std::collections::BTreeMap;

use crate::detection::nms;
use crate::io::detections::StackDetections;

/// One detection on one slice: `bbox` is `(x1, y1, x2, y2)` in pixel coordinates of the slice
/// (torchvision convention: pixel `i` covers `[i, i + 1)`, width `x2 - x1`, no `+1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SliceBox {
    pub bbox: [f32; 4],
    pub score: f32,
    pub class_id: usize,
}

/// The linker's input from a stack detection file (`cryodet detect STACK` writes one): for each
/// detected slice `z`, its boxes as [`SliceBox`]es, in the file's order.
pub fn slice_boxes(stack: &StackDetections) -> Vec<(usize, Vec<SliceBox>)> {
    stack
        .slices
        .iter()
        .map(|s| {
            let boxes = s
                .detections
                .iter()
                .map(|d| SliceBox {
                    bbox: d.bbox,
                    score: d.score,
                    class_id: d.class_id,
                })
                .collect();
            (s.z, boxes)
        })
        .collect()
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
    /// A box of which at least this fraction lies inside a larger box of the same class on the
    /// same slice is dropped before linking ([`suppress_fragments`]). Default **0.8**; a value
    /// above 1 turns the rule off.
    pub fragment_overlap: f32,
    /// Window (in linked boxes, odd; even values are rounded up) of the running median that
    /// smooths each box coordinate along a track before the union gives the 3D box
    /// ([`smooth_track`]). Default **9** (chosen on two validation tomograms, seeds 11 and 12,
    /// over 1, 5 and 9); 0 or 1 use the raw boxes.
    pub smooth_window: usize,
    /// Pieces of one organelle are merged (`merge_pieces`) when their footprints (the xy
    /// union of their smoothed boxes) overlap at least this much (IoU). Default **0.5** (chosen
    /// over 0.5, 0.6, 0.7 and off on twelve development tomograms, seeds 11-22: objects found
    /// 36, 38, 38, 38 of 41, spurious objects 7 (off), 5 (0.6), 1 (0.5)); above 1 turns merging off.
    pub merge_iou: f32,
    /// ... and at most this many detected slices lie between them (0: they must touch or
    /// overlap in z). Default **10**.
    pub merge_max_gap: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            iou_threshold: 0.3,
            max_gap: 2,
            min_slices: 1,
            stride: 1,
            fragment_overlap: 0.8,
            smooth_window: 9,
            merge_iou: 0.5,
            merge_max_gap: 10,
        }
    }
}

impl LinkConfig {
    /// The defaults of `cryodet detect --3d` and `cryodet link` (and the Python package's
    /// `Model.detect_volume`): [`Default`] with `min_slices` 3, so that an isolated false
    /// positive on one or two slices makes no object.
    pub fn for_stacks() -> Self {
        LinkConfig {
            min_slices: 3,
            ..Default::default()
        }
    }

    /// The configuration with its thresholds checked (`iou_threshold` in (0, 1], `merge_iou`
    /// and `fragment_overlap` positive and finite; errors name the CLI option), `min_slices`
    /// and `stride` at least 1.
    pub fn checked(self) -> crate::Result<Self> {
        use crate::Error;
        if !(self.iou_threshold > 0.0 && self.iou_threshold <= 1.0) {
            return Err(Error::invalid(format!(
                "--link-iou {} must be in (0, 1]",
                self.iou_threshold
            )));
        }
        let positive = |v: f32| v.is_finite() && v > 0.0;
        if !positive(self.merge_iou) {
            return Err(Error::invalid(format!(
                "--merge-iou {} must be a positive number",
                self.merge_iou
            )));
        }
        if !positive(self.fragment_overlap) {
            return Err(Error::invalid(format!(
                "--fragment-overlap {} must be a positive number",
                self.fragment_overlap
            )));
        }
        Ok(LinkConfig {
            min_slices: self.min_slices.max(1),
            stride: self.stride.max(1),
            ..self
        })
    }
}

/// One organelle in 3D.
#[derive(Debug, Clone, PartialEq)]
pub struct Object3d {
    /// 1-based number in the sorted output of [`link_slices`] (0 means background elsewhere).
    pub id: usize,
    pub class_id: usize,
    /// `(x1, y1, z1, x2, y2, z2)`: x/y are the union (min/max) of the linked slice boxes after
    /// [`smooth_track`] (with `smooth_window <= 1`, of the raw boxes);
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
    for boxes in by_z.values_mut() {
        *boxes = suppress_fragments(boxes, cfg.fragment_overlap);
    }
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

    let mut objects: Vec<Object3d> = merge_pieces(stitch(tracks, cfg), cfg)
        .into_iter()
        .filter(|t| t.boxes.len() >= cfg.min_slices)
        .map(|t| to_object(t, z_first, z_last, cfg.smooth_window))
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

/// Joins broken tracks (module documentation, "broken tracks are stitched"). Tracks come in
/// creation order and leave in the order of their first (earliest) piece.
fn stitch(tracks: Vec<Track>, cfg: &LinkConfig) -> Vec<Track> {
    let stride = cfg.stride.max(1);
    let overlap = cfg.max_gap.saturating_mul(stride);
    let min_len = cfg.min_slices.max(2);
    // Candidate joins (iou, a, b): a's end continues into b's start.
    let mut cands: Vec<(f32, usize, usize)> = Vec::new();
    for (ia, a) in tracks.iter().enumerate() {
        let (a_first, a_last) = (a.boxes[0].0, a.last().0);
        for (ib, b) in tracks.iter().enumerate() {
            let (b_first, b_last) = (b.boxes[0].0, b.last().0);
            if ia == ib
                || b.boxes.len() < min_len
                || a.class_id != b.class_id
                || b_first <= a_first
                || b_last <= a_last
                || b_first > a_last
                || b_first + overlap < a_last
            {
                continue;
            }
            // a's last box before b begins (exists: a starts before b)
            let before = a.boxes.iter().rev().find(|(z, _)| *z < b_first);
            let Some((_, pa)) = before else { continue };
            let iou = nms::iou(&pa.bbox, &b.boxes[0].1.bbox);
            if iou > 0.0 && iou >= cfg.iou_threshold {
                cands.push((iou, ia, ib));
            }
        }
    }
    cands.sort_by(|p, q| q.0.total_cmp(&p.0).then(p.1.cmp(&q.1)).then(p.2.cmp(&q.2)));
    let n = tracks.len();
    let (mut next, mut has_prev) = (vec![None; n], vec![false; n]);
    for &(_, a, b) in &cands {
        if next[a].is_none() && !has_prev[b] {
            next[a] = Some(b);
            has_prev[b] = true;
        }
    }
    // Follow every chain from its head; b always starts after a, so chains cannot cycle.
    let mut slots: Vec<Option<Track>> = tracks.into_iter().map(Some).collect();
    let mut out = Vec::new();
    for head in 0..n {
        if has_prev[head] {
            continue;
        }
        let mut t = slots[head].take().expect("each track is in one chain");
        let mut cur = head;
        while let Some(b) = next[cur] {
            let tb = slots[b].take().expect("each track is in one chain");
            let b_first = tb.boxes[0].0;
            t.boxes.retain(|(z, _)| *z < b_first);
            t.boxes.extend(tb.boxes);
            cur = b;
        }
        out.push(t);
    }
    out
}

/// The xy footprint of a track: the union of its smoothed boxes.
fn footprint(t: &Track, window: usize) -> [f32; 4] {
    let raw: Vec<[f32; 4]> = t.boxes.iter().map(|(_, b)| b.bbox).collect();
    smooth_track(&raw, window).into_iter().fold(
        [
            f32::INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        ],
        |a, b| {
            [
                a[0].min(b[0]),
                a[1].min(b[1]),
                a[2].max(b[2]),
                a[3].max(b[3]),
            ]
        },
    )
}

/// Merges pieces of one organelle (module documentation, "pieces are merged"): while two tracks
/// of the same class, each of at least `max(2, min_slices)` boxes, have footprints with
/// `IoU >= merge_iou` and at most `merge_max_gap` detected slices between their z ranges, the
/// pair with the highest footprint IoU (ties: lower indices) becomes one track; on a slice where
/// both have a box, the higher-scoring box is kept (ties: the first track's).
fn merge_pieces(mut tracks: Vec<Track>, cfg: &LinkConfig) -> Vec<Track> {
    if cfg.merge_iou > 1.0 || cfg.merge_iou.is_nan() {
        return tracks; // merging turned off
    }
    let stride = cfg.stride.max(1);
    let max_gap = cfg.merge_max_gap.saturating_add(1).saturating_mul(stride);
    let min_len = cfg.min_slices.max(2);
    // Footprints, kept in step with `tracks`: only the merged track's changes per round.
    let mut feet: Vec<[f32; 4]> = tracks
        .iter()
        .map(|t| footprint(t, cfg.smooth_window))
        .collect();
    loop {
        let mut best: Option<(f32, usize, usize)> = None;
        for i in 0..tracks.len() {
            for j in i + 1..tracks.len() {
                let (a, b) = (&tracks[i], &tracks[j]);
                if a.class_id != b.class_id || a.boxes.len() < min_len || b.boxes.len() < min_len {
                    continue;
                }
                // slices strictly between the two z ranges (0 when they touch or overlap)
                let (a0, a1, b0, b1) = (a.boxes[0].0, a.last().0, b.boxes[0].0, b.last().0);
                let gap = b0.saturating_sub(a1).max(a0.saturating_sub(b1));
                if gap > max_gap {
                    continue;
                }
                let iou = nms::iou(&feet[i], &feet[j]);
                if iou >= cfg.merge_iou && best.is_none_or(|(v, _, _)| iou > v) {
                    best = Some((iou, i, j));
                }
            }
        }
        let Some((_, i, j)) = best else {
            return tracks;
        };
        let b = tracks.remove(j); // j > i: index i is unchanged
        let a = &mut tracks[i];
        let mut by_z: BTreeMap<usize, SliceBox> = a.boxes.iter().copied().collect();
        for (z, sb) in b.boxes {
            match by_z.get(&z) {
                Some(old) if old.score >= sb.score => {}
                _ => {
                    by_z.insert(z, sb);
                }
            }
        }
        a.boxes = by_z.into_iter().collect();
        feet.remove(j);
        feet[i] = footprint(a, cfg.smooth_window);
    }
}

/// Drops the fragments among one slice's boxes: visiting boxes from the largest area down (ties
/// in the canonical order), a box is kept unless `area(A ∩ B) >= min_overlap * area(B)` for a
/// kept box `A` of the same class. Boxes of zero area are kept (they never link). Returns the kept
/// boxes in the canonical order (class, x1, y1, x2, y2, score descending).
///
/// Larger wins over higher-scoring on purpose: of a box on a whole organelle and one on its
/// half, the detector may score the half higher, but the whole is what the 3D object needs.
/// Two distinct organelles are dropped this way only when one lies almost entirely inside the
/// other's box.
pub fn suppress_fragments(boxes: &[SliceBox], min_overlap: f32) -> Vec<SliceBox> {
    let area = |b: &[f32; 4]| (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    let mut order: Vec<&SliceBox> = boxes.iter().collect();
    order.sort_by(|a, b| {
        area(&b.bbox)
            .total_cmp(&area(&a.bbox))
            .then_with(|| canonical_cmp(a, b))
    });
    let mut kept: Vec<SliceBox> = Vec::with_capacity(boxes.len());
    for b in order {
        let own = area(&b.bbox);
        let fragment = own > 0.0
            && kept.iter().any(|k| {
                k.class_id == b.class_id && nms::intersection(&k.bbox, &b.bbox) >= min_overlap * own
            });
        if !fragment {
            kept.push(*b);
        }
    }
    kept.sort_by(canonical_cmp);
    kept
}

/// Running median of each coordinate along a track: box `i` becomes, coordinate by coordinate,
/// the median of boxes `i - r ..= i + r` (`r = window / 2`, the window shrunk symmetrically to
/// fit at the track's ends, so the first and last boxes stay as they are). `boxes` are in
/// increasing `z`; a window of 0 or 1 returns them unchanged.
///
/// Why a median: linked boxes of one organelle change smoothly with z, while the detector's
/// errors are mostly single-slice outliers (a box reaching into the neighbour, a box cut short);
/// the median removes those and keeps the monotone growth and shrinking of the cross-section.
pub fn smooth_track(boxes: &[[f32; 4]], window: usize) -> Vec<[f32; 4]> {
    let r = window / 2;
    let n = boxes.len();
    (0..n)
        .map(|i| {
            let h = r.min(i).min(n - 1 - i);
            std::array::from_fn(|k| {
                let mut v: Vec<f32> = boxes[i - h..=i + h].iter().map(|b| b[k]).collect();
                v.sort_by(f32::total_cmp);
                v[h]
            })
        })
        .collect()
}

fn to_object(t: Track, z_first: usize, z_last: usize, smooth_window: usize) -> Object3d {
    let first_z = t.boxes[0].0;
    let last_z = t.last().0;
    let xy = footprint(&t, smooth_window);
    let score_sum: f64 = t.boxes.iter().map(|(_, b)| b.score as f64).sum();
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
