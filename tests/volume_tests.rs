//! Tests of cryodet::volume: linking per-slice boxes into 3D objects, 3D IoU, the writers,
//! tilt files, label volume, montage, and an acceptance test on synthetic ellipsoids.

use cryodet::testutil::{assert_close, temp_dir, FORWARD};
use cryodet::volume::{
    iou3d, label_volume, link_slices, montage, object_color, read_tilt_angles, smooth_track,
    suppress_fragments, tilt_file_for, write_imod_points, write_objects_csv, write_objects_json,
    LinkConfig, Object3d, SliceBox,
};
use cryodet::Error;
use ndarray::{arr1, Array2};
use rand::{seq::SliceRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Acceptance: every synthetic organelle seen on >= this many slices must be found ...
const MIN_TRUE_SLICES: usize = 3;
/// ... with a 3D IoU at least this high.
const MIN_IOU3D: f32 = 0.7;

type Slices = Vec<(usize, Vec<SliceBox>)>;

fn sb(bbox: [f32; 4]) -> SliceBox {
    SliceBox {
        bbox,
        score: 0.9,
        class_id: 1,
    }
}

fn sbc(bbox: [f32; 4], class_id: usize, score: f32) -> SliceBox {
    SliceBox {
        bbox,
        score,
        class_id,
    }
}

/// Slices `0..nz`, all empty.
fn empty_stack(nz: usize) -> Slices {
    (0..nz).map(|z| (z, Vec::new())).collect()
}

/// Adds `b` to every slice whose z is in `zs`.
fn put(stack: &mut Slices, zs: impl IntoIterator<Item = usize>, b: SliceBox) {
    for z in zs {
        stack
            .iter_mut()
            .find(|(zz, _)| *zz == z)
            .expect("slice exists")
            .1
            .push(b);
    }
}

/// The tracker's per-slice rules alone (gaps, splits, merges of boxes): without the final merging
/// of pieces by footprint, which would join the branches these hand-made cases build on purpose
/// (`pieces_of_one_object_are_merged_by_footprint` tests that step).
fn tracker_only() -> LinkConfig {
    LinkConfig {
        merge_iou: 2.0,
        ..LinkConfig::default()
    }
}

fn zs_of(o: &Object3d) -> Vec<usize> {
    o.slices.iter().map(|(z, _)| *z).collect()
}

// ---------------------------------------------------------------------------------------------
// Linking
// ---------------------------------------------------------------------------------------------

#[test]
fn single_object_over_ten_slices() {
    let mut stack = empty_stack(14);
    for z in 2..12 {
        // a slowly growing box, with varying scores
        let g = z as f32;
        put(
            &mut stack,
            [z],
            sbc([10.0 - g, 20.0, 40.0 + g, 50.0 + g], 1, 0.5 + 0.04 * g),
        );
    }
    let objs = link_slices(&stack, &LinkConfig::default());
    assert_eq!(objs.len(), 1, "{objs:?}");
    let o = &objs[0];
    assert_eq!(o.id, 1);
    assert_eq!(o.class_id, 1);
    assert_eq!(zs_of(o), (2..12).collect::<Vec<_>>());
    assert_eq!(
        o.bbox3d,
        [10.0 - 11.0, 20.0, 2.0, 40.0 + 11.0, 50.0 + 11.0, 12.0]
    );
    let mean = (2..12).map(|z| 0.5 + 0.04 * z as f32).sum::<f32>() / 10.0;
    assert_close(
        "mean score",
        arr1(&[o.score]).view().into_dyn(),
        arr1(&[mean]).view().into_dyn(),
        FORWARD,
    );
    assert!(!o.touches_first && !o.touches_last);
}

#[test]
fn gaps_up_to_max_gap_are_bridged() {
    let cfg = LinkConfig {
        max_gap: 2,
        ..LinkConfig::default()
    };
    for gap in [1usize, 2] {
        let mut stack = empty_stack(20);
        let zs: Vec<usize> = (0..5).chain(5 + gap..12).collect();
        put(&mut stack, zs.iter().copied(), sb([10.0, 10.0, 30.0, 30.0]));
        let objs = link_slices(&stack, &cfg);
        assert_eq!(objs.len(), 1, "gap {gap}: {objs:?}");
        assert_eq!(zs_of(&objs[0]), zs, "gap {gap}");
        assert_eq!(
            objs[0].bbox3d,
            [10.0, 10.0, 0.0, 30.0, 30.0, 12.0],
            "gap {gap}"
        );
    }
}

#[test]
fn gap_of_max_gap_plus_one_is_not_bridged() {
    for max_gap in [0usize, 1, 2, 3] {
        let cfg = LinkConfig {
            max_gap,
            ..tracker_only()
        };
        let mut stack = empty_stack(20);
        let gap = max_gap + 1;
        put(
            &mut stack,
            (0..5).chain(5 + gap..12),
            sb([10.0, 10.0, 30.0, 30.0]),
        );
        let objs = link_slices(&stack, &cfg);
        assert_eq!(objs.len(), 2, "max_gap {max_gap}: {objs:?}");
        assert_eq!(zs_of(&objs[0]), (0..5).collect::<Vec<_>>());
        assert_eq!(zs_of(&objs[1]), (5 + gap..12).collect::<Vec<_>>());
        assert_eq!(objs[1].id, 2);
    }
}

#[test]
fn side_by_side_objects_never_merge() {
    // Two columns 2 px apart that wobble by +-1 px: always closer to themselves than to each other.
    let mut stack = empty_stack(12);
    for z in 0..12 {
        let w = if z % 2 == 0 { 1.0 } else { -1.0 };
        put(&mut stack, [z], sb([10.0 + w, 10.0, 40.0 + w, 40.0]));
        put(&mut stack, [z], sb([42.0 - w, 12.0, 72.0 - w, 40.0]));
    }
    let objs = link_slices(&stack, &LinkConfig::default());
    assert_eq!(objs.len(), 2, "{objs:?}");
    for o in &objs {
        assert_eq!(o.n_slices(), 12);
        let x1s: Vec<f32> = o.slices.iter().map(|(_, b)| b.bbox[0]).collect();
        assert!(
            x1s.iter().all(|&x| (x - x1s[0]).abs() <= 2.0),
            "mixed columns: {x1s:?}"
        );
    }
    // sorted by z then x: the left column first
    assert!(objs[0].bbox3d[0] < objs[1].bbox3d[0]);
}

#[test]
fn split_continues_the_best_overlap_and_starts_a_new_object() {
    // z 0..5: one box; z 5..10: it splits into a left (IoU 0.6) and a right (IoU 0.5) part.
    let mut stack = empty_stack(10);
    put(&mut stack, 0..5, sb([0.0, 0.0, 20.0, 20.0]));
    put(&mut stack, 5..10, sb([0.0, 0.0, 12.0, 20.0]));
    put(&mut stack, 5..10, sb([10.0, 0.0, 20.0, 20.0]));
    let objs = link_slices(&stack, &tracker_only());
    assert_eq!(objs.len(), 2, "{objs:?}");
    assert_eq!(zs_of(&objs[0]), (0..10).collect::<Vec<_>>());
    assert_eq!(
        objs[0].slices[7].1.bbox,
        [0.0, 0.0, 12.0, 20.0],
        "stronger branch continues"
    );
    assert_eq!(zs_of(&objs[1]), (5..10).collect::<Vec<_>>());
    assert_eq!(objs[1].bbox3d, [10.0, 0.0, 5.0, 20.0, 20.0, 10.0]);
}

#[test]
fn split_with_equal_overlaps_is_deterministic() {
    // Both halves overlap the parent with IoU 0.5: the tie goes to the canonical first box
    // (smaller x1), whatever order the boxes come in.
    for swap in [false, true] {
        let mut stack = empty_stack(6);
        put(&mut stack, 0..3, sb([0.0, 0.0, 20.0, 20.0]));
        let (l, r) = (sb([0.0, 0.0, 10.0, 20.0]), sb([10.0, 0.0, 20.0, 20.0]));
        let halves = if swap { [r, l] } else { [l, r] };
        for h in halves {
            put(&mut stack, 3..6, h);
        }
        let objs = link_slices(
            &stack,
            &LinkConfig {
                iou_threshold: 0.5,
                ..tracker_only()
            },
        );
        assert_eq!(objs.len(), 2, "{objs:?}");
        assert_eq!(
            objs[0].slices[3].1.bbox,
            [0.0, 0.0, 10.0, 20.0],
            "swap {swap}"
        );
        assert_eq!(zs_of(&objs[1]), vec![3, 4, 5]);
    }
}

#[test]
fn merge_ends_the_weaker_track() {
    // z 0..5: two boxes; z 5..10: one box overlapping the left with IoU 0.6, the right with 0.5.
    // z 10..12: both boxes reappear. Had the weaker (right) track stayed open (max_gap 10), it
    // would take the right box back (IoU 1); it was ended, so the right box is a new object.
    let (left, right, merged) = (
        [0.0, 0.0, 12.0, 20.0],
        [10.0, 0.0, 20.0, 20.0],
        [0.0, 0.0, 20.0, 20.0],
    );
    let mut stack = empty_stack(12);
    put(&mut stack, (0..5).chain(10..12), sb(left));
    put(&mut stack, (0..5).chain(10..12), sb(right));
    put(&mut stack, 5..10, sb(merged));
    let cfg = LinkConfig {
        max_gap: 10,
        ..tracker_only()
    };
    let objs = link_slices(&stack, &cfg);
    assert_eq!(objs.len(), 3, "{objs:?}");
    // sorted by z1 then x1: left (0..12), right (0..5, ended by the merge), right again (10..12)
    assert_eq!(zs_of(&objs[0]), (0..12).collect::<Vec<_>>());
    assert_eq!(objs[0].slices[7].1.bbox, merged);
    assert_eq!(objs[0].slices[11].1.bbox, left);
    assert_eq!(objs[1].bbox3d, [10.0, 0.0, 0.0, 20.0, 20.0, 5.0]);
    assert_eq!(zs_of(&objs[2]), vec![10, 11]);
    assert_eq!(objs[2].slices[0].1.bbox, right);
}

#[test]
fn merge_with_equal_overlaps_prefers_the_recently_seen_track() {
    // Track A is seen on z 0 only, track B on z 0, 1, 2. On z 3 one box overlaps both last
    // boxes with IoU 15 / 25 = 0.6: B (gap 1) beats A (gap 3), and A is ended by the merge.
    let mut stack = empty_stack(5);
    put(&mut stack, [0], sb([0.0, 0.0, 20.0, 10.0]));
    put(&mut stack, 0..3, sb([10.0, 0.0, 30.0, 10.0]));
    put(&mut stack, [3], sb([5.0, 0.0, 25.0, 10.0]));
    let objs = link_slices(
        &stack,
        &LinkConfig {
            max_gap: 3,
            ..LinkConfig::default()
        },
    );
    assert_eq!(objs.len(), 2, "{objs:?}");
    assert_eq!((objs[0].bbox3d[0], zs_of(&objs[0])), (0.0, vec![0]));
    assert_eq!(
        (objs[1].bbox3d[0], zs_of(&objs[1])),
        (5.0, vec![0, 1, 2, 3])
    );
}

#[test]
fn objects_touching_first_and_last_slice_are_flagged() {
    let mut stack = empty_stack(10);
    put(&mut stack, 0..3, sb([0.0, 0.0, 10.0, 10.0]));
    put(&mut stack, 3..7, sb([50.0, 0.0, 60.0, 10.0]));
    put(&mut stack, 6..10, sb([100.0, 0.0, 110.0, 10.0]));
    put(&mut stack, 0..10, sb([200.0, 0.0, 210.0, 10.0]));
    let objs = link_slices(&stack, &LinkConfig::default());
    let flags: Vec<(usize, bool, bool)> = objs
        .iter()
        .map(|o| (o.slices[0].0, o.touches_first, o.touches_last))
        .collect();
    assert_eq!(
        flags,
        vec![
            (0, true, false),
            (0, true, true),
            (3, false, false),
            (6, false, true)
        ]
    );
}

#[test]
fn different_classes_are_never_linked() {
    let mut stack = empty_stack(10);
    let b = [10.0, 10.0, 30.0, 30.0];
    // the same box, class 1 then class 2 along z
    put(&mut stack, 0..5, sbc(b, 1, 0.9));
    put(&mut stack, 5..10, sbc(b, 2, 0.9));
    // the same box in both classes on every slice, elsewhere
    let c = [100.0, 10.0, 130.0, 30.0];
    put(&mut stack, 0..10, sbc(c, 2, 0.8));
    put(&mut stack, 0..10, sbc(c, 1, 0.7));
    let objs = link_slices(&stack, &LinkConfig::default());
    assert_eq!(objs.len(), 4, "{objs:?}");
    for o in &objs {
        assert!(
            o.slices.iter().all(|(_, s)| s.class_id == o.class_id),
            "{o:?}"
        );
    }
    let summary: Vec<(usize, usize, usize)> = objs
        .iter()
        .map(|o| (o.class_id, o.slices[0].0, o.n_slices()))
        .collect();
    assert_eq!(summary, vec![(1, 0, 5), (1, 0, 10), (2, 0, 10), (2, 5, 5)]);
}

#[test]
fn stride_measures_gaps_in_detected_slices() {
    const K: usize = 4;
    let detected: Vec<usize> = (0..10).map(|i| i * K).collect(); // 0, 4, ..., 36
    let b = sb([10.0, 10.0, 30.0, 30.0]);
    let run = |present: &[usize], max_gap: usize, stride: usize| {
        let mut stack: Slices = detected.iter().map(|&z| (z, Vec::new())).collect();
        put(&mut stack, present.iter().copied(), b);
        link_slices(
            &stack,
            &LinkConfig {
                max_gap,
                stride,
                ..tracker_only()
            },
        )
    };
    // every detected slice: one object, z extent 0..37
    let objs = run(&detected, 0, K);
    assert_eq!(objs.len(), 1);
    assert_eq!(objs[0].bbox3d[2..3], [0.0]);
    assert_eq!(objs[0].bbox3d[5], 37.0);
    // ignoring the stride, consecutive detected slices are a gap of K - 1 > max_gap = 2
    assert_eq!(run(&detected, 2, 1).len(), 10);
    // one missed detected slice (z = 16): bridged with max_gap 1, not with max_gap 0
    let one_missing: Vec<usize> = detected.iter().copied().filter(|&z| z != 16).collect();
    assert_eq!(run(&one_missing, 1, K).len(), 1);
    assert_eq!(run(&one_missing, 0, K).len(), 2);
    // two missed detected slices (16, 20): not bridged with max_gap 1
    let two_missing: Vec<usize> = detected
        .iter()
        .copied()
        .filter(|&z| z != 16 && z != 20)
        .collect();
    let objs = run(&two_missing, 1, K);
    assert_eq!(objs.len(), 2);
    assert_eq!(objs[0].bbox3d[5], 13.0);
    assert_eq!(objs[1].bbox3d[2], 24.0);
}

#[test]
fn min_slices_drops_short_objects() {
    let mut stack = empty_stack(10);
    put(&mut stack, 0..10, sb([0.0, 0.0, 10.0, 10.0]));
    put(&mut stack, [4], sb([50.0, 0.0, 60.0, 10.0]));
    put(&mut stack, [6, 7], sb([90.0, 0.0, 99.0, 10.0]));
    let count = |m| {
        link_slices(
            &stack,
            &LinkConfig {
                min_slices: m,
                ..LinkConfig::default()
            },
        )
    };
    assert_eq!(count(1).len(), 3);
    assert_eq!(count(2).len(), 2);
    assert_eq!(count(3).len(), 1);
    assert_eq!(count(3)[0].id, 1, "ids are renumbered after filtering");
    assert_eq!(count(11).len(), 0);
}

#[test]
fn output_does_not_depend_on_input_order() {
    let mut stack = empty_stack(8);
    put(&mut stack, 0..8, sb([0.0, 0.0, 20.0, 20.0]));
    put(&mut stack, 2..8, sbc([5.0, 0.0, 25.0, 20.0], 1, 0.4)); // overlapping duplicate
    put(&mut stack, 1..6, sb([40.0, 0.0, 60.0, 20.0]));
    put(&mut stack, 3..8, sbc([40.0, 0.0, 60.0, 20.0], 2, 0.6));
    let reference = link_slices(&stack, &LinkConfig::default());
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..5 {
        let mut shuffled = stack.clone();
        shuffled.shuffle(&mut rng);
        for (_, boxes) in shuffled.iter_mut() {
            boxes.shuffle(&mut rng);
        }
        assert_eq!(link_slices(&shuffled, &LinkConfig::default()), reference);
    }
}

#[test]
fn non_finite_boxes_are_ignored_and_empty_input_gives_nothing() {
    assert!(link_slices(&[], &LinkConfig::default()).is_empty());
    let mut stack = empty_stack(3);
    put(&mut stack, 0..3, sb([0.0, 0.0, 10.0, 10.0]));
    put(&mut stack, [1], sb([f32::NAN, 0.0, 10.0, 10.0]));
    put(
        &mut stack,
        [2],
        sbc([0.0, 0.0, 10.0, 10.0], 1, f32::INFINITY),
    );
    let objs = link_slices(&stack, &LinkConfig::default());
    assert_eq!(objs.len(), 1, "{objs:?}");
    assert_eq!(objs[0].n_slices(), 3);
}

#[test]
fn fragments_inside_a_larger_box_are_dropped_whatever_their_score() {
    let whole = sbc([0.0, 0.0, 40.0, 20.0], 1, 0.7);
    let half = sbc([0.0, 0.0, 20.0, 20.0], 1, 0.99); // all inside `whole`, scored higher
    let poking = sbc([30.0, 0.0, 50.0, 20.0], 1, 0.9); // half inside: 0.5 < 0.8, kept
    let other_class = sbc([5.0, 5.0, 15.0, 15.0], 2, 0.9); // inside, but another class: kept
    let kept = suppress_fragments(&[half, poking, whole, other_class], 0.8);
    assert_eq!(kept, vec![whole, poking, other_class], "canonical order");
    // exactly at the threshold counts as a fragment: 16 of 20 columns inside
    let edge = sbc([24.0, 0.0, 44.0, 20.0], 1, 0.5);
    assert_eq!(suppress_fragments(&[whole, edge], 0.8), vec![whole]);
    assert_eq!(suppress_fragments(&[whole, edge], 0.81), vec![whole, edge]);
    // above 1 turns the rule off; a zero-area box is kept (it never links anyway)
    assert_eq!(suppress_fragments(&[whole, half], 1.01), vec![half, whole]);
    let flat = sbc([5.0, 5.0, 5.0, 15.0], 1, 0.9);
    assert_eq!(suppress_fragments(&[flat, whole], 0.8), vec![whole, flat]);
    // two equal boxes: one survives (the canonical first: same box, higher score)
    let twin = sbc([0.0, 0.0, 40.0, 20.0], 1, 0.9);
    assert_eq!(suppress_fragments(&[whole, twin], 0.8), vec![twin]);
}

#[test]
fn a_fragment_no_longer_breaks_the_object() {
    // One organelle on z 0..10; on z 4 the detector adds a box on its left half, which overlaps
    // the previous box better (IoU 0.5 vs 0.41) than the slightly shifted whole box does.
    // Without the fragment rule the track takes the half and the whole box starts a new object.
    let mut stack = empty_stack(10);
    put(&mut stack, (0..4).chain(5..10), sb([0.0, 0.0, 40.0, 20.0]));
    put(&mut stack, [4], sb([12.0, 0.0, 52.0, 20.0]));
    put(&mut stack, [4], sb([12.0, 0.0, 32.0, 20.0]));
    let off = LinkConfig {
        fragment_overlap: 2.0,
        smooth_window: 1,
        ..LinkConfig::default()
    };
    assert!(link_slices(&stack, &off).len() > 1);
    let objs = link_slices(&stack, &LinkConfig::default());
    assert_eq!(objs.len(), 1, "{objs:?}");
    assert_eq!(zs_of(&objs[0]), (0..10).collect::<Vec<_>>());
    assert_eq!(objs[0].slices[4].1.bbox, [12.0, 0.0, 52.0, 20.0]);
}

#[test]
fn running_median_removes_single_slice_outliers() {
    // x2 grows 10, 11, ..., 16 with one outlier (40) on box 3; the other coordinates are fixed.
    let raw: Vec<[f32; 4]> = (0..7)
        .map(|i| [0.0, 0.0, if i == 3 { 40.0 } else { 10.0 + i as f32 }, 5.0])
        .collect();
    let x2 = |b: &[[f32; 4]]| b.iter().map(|b| b[2]).collect::<Vec<_>>();
    // window 5: ends keep their value (window shrinks to 1), boxes 1 and 5 use 3 boxes, the
    // rest 5; box 3 = median(11, 12, 40, 14, 15) = 14, box 4 = median(12, 40, 14, 15, 16) = 15
    assert_eq!(
        x2(&smooth_track(&raw, 5)),
        vec![10.0, 11.0, 12.0, 14.0, 15.0, 15.0, 16.0]
    );
    assert_eq!(
        x2(&smooth_track(&raw, 3)),
        vec![10.0, 11.0, 12.0, 14.0, 15.0, 15.0, 16.0]
    );
    // an even window is rounded up: 4 behaves as 5
    assert_eq!(smooth_track(&raw, 4), smooth_track(&raw, 5));
    assert_eq!(smooth_track(&raw, 1), raw);
    assert_eq!(smooth_track(&raw, 0), raw);
    assert!(smooth_track(&[], 5).is_empty());
    // the 3D box ignores the outlier with smoothing and keeps it without
    let mut stack = empty_stack(7);
    for (z, b) in raw.iter().enumerate() {
        put(&mut stack, [z], sb(*b));
    }
    let with = link_slices(&stack, &LinkConfig::default());
    assert_eq!(with[0].bbox3d, [0.0, 0.0, 0.0, 16.0, 5.0, 7.0]);
    assert_eq!(
        with[0].slices[3].1.bbox[2], 40.0,
        "slices keep the raw boxes"
    );
    let without = LinkConfig {
        smooth_window: 1,
        ..LinkConfig::default()
    };
    assert_eq!(link_slices(&stack, &without)[0].bbox3d[3], 40.0);
}

#[test]
fn a_track_broken_by_a_double_box_is_stitched() {
    // One organelle on z 0..12. On z 6 it has two boxes: the track continues with the one it
    // overlaps more (`bad`, IoU 20/30 = 0.67 against `good`'s 22/38 = 0.58) and `good` starts a
    // new track; from z 7 the organelle's boxes overlap `good` (IoU 1) more than `bad`
    // (12/38 = 0.32), so the first track is ended by the merge rule. Stitching joins the two
    // pieces: z 0..6 of the first, then the second (its box on the shared slice z 6).
    let (whole, bad, good) = (
        [0.0, 0.0, 30.0, 20.0],
        [0.0, 0.0, 20.0, 20.0],
        [8.0, 0.0, 38.0, 20.0],
    );
    let mut stack = empty_stack(12);
    put(&mut stack, 0..6, sb(whole));
    put(&mut stack, [6], sb(bad));
    put(&mut stack, 6..12, sb(good));
    let cfg = LinkConfig {
        fragment_overlap: 2.0,
        smooth_window: 1,
        ..LinkConfig::default()
    };
    let objs = link_slices(&stack, &cfg);
    assert_eq!(objs.len(), 1, "{objs:?}");
    assert_eq!(zs_of(&objs[0]), (0..12).collect::<Vec<_>>());
    assert_eq!(objs[0].slices[6].1.bbox, good);
    assert_eq!(objs[0].bbox3d, [0.0, 0.0, 0.0, 38.0, 20.0, 12.0]);
    // a lone box is no continuation: with `good` on z 6 only, it stays apart
    let mut lone = empty_stack(7);
    put(&mut lone, 0..6, sb(whole));
    put(&mut lone, [6], sb(bad));
    put(&mut lone, [6], sb(good));
    assert_eq!(link_slices(&lone, &cfg).len(), 2);
    // two organelles side by side (IoU 12/28 = 0.43) that coexist on z 3..8, longer than
    // max_gap (2) slices, are not stitched
    let mut side = empty_stack(12);
    put(&mut side, 0..8, sb([0.0, 0.0, 20.0, 20.0]));
    put(&mut side, 3..12, sb([8.0, 0.0, 28.0, 20.0]));
    assert_eq!(link_slices(&side, &cfg).len(), 2);
    // ... but with max_gap 5 they count as one organelle's double box
    let wide = LinkConfig { max_gap: 5, ..cfg };
    assert_eq!(link_slices(&side, &wide).len(), 1);
}

#[test]
fn pieces_of_one_object_are_merged_by_footprint() {
    let cfg = LinkConfig {
        smooth_window: 1,
        ..LinkConfig::default()
    };
    // 1. Lost for 6 slices (more than max_gap 2, within merge_max_gap 10): one object.
    let mut lost = empty_stack(20);
    put(&mut lost, (0..6).chain(12..20), sb([0.0, 0.0, 30.0, 20.0]));
    assert_eq!(link_slices(&lost, &tracker_only()).len(), 2);
    let objs = link_slices(&lost, &cfg);
    assert_eq!(objs.len(), 1, "{objs:?}");
    assert_eq!(objs[0].bbox3d, [0.0, 0.0, 0.0, 30.0, 20.0, 20.0]);
    assert_eq!(objs[0].n_slices(), 14);
    // ... but not across 11 missing slices (merge_max_gap 10)
    let mut far = empty_stack(30);
    put(&mut far, (0..6).chain(17..30), sb([0.0, 0.0, 30.0, 20.0]));
    assert_eq!(link_slices(&far, &cfg).len(), 2);
    // 2. Two tracks side by side on z 0..10 (IoU 0.43 on every slice: below link_iou 0.5 here,
    //    so the tracker keeps them apart) whose footprints overlap at 0.43 < 0.5: kept apart;
    //    with merge_iou 0.4 they are one object, and on every slice the higher-scoring box stays.
    let mut side = empty_stack(10);
    put(&mut side, 0..10, sbc([0.0, 0.0, 20.0, 20.0], 1, 0.9));
    put(&mut side, 0..10, sbc([8.0, 0.0, 28.0, 20.0], 1, 0.8));
    let strict = LinkConfig {
        iou_threshold: 0.5,
        fragment_overlap: 2.0,
        ..cfg
    };
    assert_eq!(link_slices(&side, &strict).len(), 2);
    let loose = LinkConfig {
        merge_iou: 0.4,
        ..strict
    };
    let objs = link_slices(&side, &loose);
    assert_eq!(objs.len(), 1, "{objs:?}");
    assert!(objs[0].slices.iter().all(|(_, b)| b.score == 0.9));
    assert_eq!(objs[0].bbox3d, [0.0, 0.0, 0.0, 20.0, 20.0, 10.0]);
    // 3. Other classes, and pieces shorter than max(2, min_slices), are never merged.
    let mut mixed = empty_stack(20);
    put(&mut mixed, 0..6, sbc([0.0, 0.0, 30.0, 20.0], 1, 0.9));
    put(&mut mixed, 10..16, sbc([0.0, 0.0, 30.0, 20.0], 2, 0.9));
    put(&mut mixed, [19], sbc([0.0, 0.0, 30.0, 20.0], 2, 0.9)); // 3 slices after: no bridge
    assert_eq!(link_slices(&mixed, &cfg).len(), 3);
    // 4. Three pieces in a row become one (the most overlapping pair first, then the third).
    let mut three = empty_stack(30);
    put(&mut three, 0..5, sb([0.0, 0.0, 30.0, 20.0]));
    put(&mut three, 10..15, sb([1.0, 0.0, 31.0, 20.0]));
    put(&mut three, 20..25, sb([0.0, 1.0, 30.0, 21.0]));
    let objs = link_slices(&three, &cfg);
    assert_eq!(objs.len(), 1, "{objs:?}");
    assert_eq!(objs[0].bbox3d, [0.0, 0.0, 0.0, 31.0, 21.0, 25.0]);
}

// ---------------------------------------------------------------------------------------------
// 3D IoU
// ---------------------------------------------------------------------------------------------

#[test]
fn iou3d_of_known_boxes() {
    let a = [0.0, 0.0, 0.0, 10.0, 10.0, 10.0];
    let cases: [(&str, [f32; 6], f32); 7] = [
        ("identical", a, 1.0),
        (
            "half shifted in x: 500 / 1500",
            [5.0, 0.0, 0.0, 15.0, 10.0, 10.0],
            1.0 / 3.0,
        ),
        (
            "contained half in z: 500 / 1000",
            [0.0, 0.0, 0.0, 10.0, 10.0, 5.0],
            0.5,
        ),
        (
            "shifted in x, y, z: 125 / 1875",
            [5.0, 5.0, 5.0, 15.0, 15.0, 15.0],
            125.0 / 1875.0,
        ),
        ("touching faces", [10.0, 0.0, 0.0, 20.0, 10.0, 10.0], 0.0),
        ("disjoint", [30.0, 30.0, 30.0, 40.0, 40.0, 40.0], 0.0),
        (
            "one slice deep, C != H != W: 6*4*1 / (1000)",
            [2.0, 3.0, 4.0, 8.0, 7.0, 5.0],
            0.024,
        ),
    ];
    // both argument orders; on failure the first bad index names the case (index / 2)
    let actual: Vec<f32> = cases
        .iter()
        .flat_map(|(_, b, _)| [iou3d(&a, b), iou3d(b, &a)])
        .collect();
    let expected: Vec<f32> = cases.iter().flat_map(|(_, _, e)| [*e, *e]).collect();
    let names: Vec<&str> = cases.iter().map(|(n, _, _)| *n).collect();
    assert_close(
        &format!("iou3d of {names:?}"),
        arr1(&actual).view().into_dyn(),
        arr1(&expected).view().into_dyn(),
        FORWARD,
    );
    let empty = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
    assert_eq!(iou3d(&empty, &empty), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------------------------

/// Two objects: one on z 2..5 with a gap, one on z 0..2 of class 2.
fn two_objects() -> Vec<Object3d> {
    let mut stack = empty_stack(8);
    put(&mut stack, [2, 3, 5], sbc([10.0, 20.0, 30.5, 40.0], 1, 0.8));
    put(&mut stack, [0, 1], sbc([100.0, 0.0, 120.0, 10.0], 2, 0.6));
    link_slices(&stack, &LinkConfig::default())
}

#[test]
fn imod_point_file_format() {
    let objs = two_objects();
    let dir = temp_dir("volume-imod");
    let path = dir.join("objects.txt");
    write_imod_points(&path, &objs).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let rows: Vec<(usize, usize, f32, f32, f32)> = text
        .lines()
        .map(|l| {
            let t: Vec<&str> = l.split(' ').collect();
            assert_eq!(t.len(), 5, "line {l:?}");
            (
                t[0].parse().unwrap(),
                t[1].parse().unwrap(),
                t[2].parse().unwrap(),
                t[3].parse().unwrap(),
                t[4].parse().unwrap(),
            )
        })
        .collect();
    // object 1 = class 2 (z 0, 1): 2 contours x 4 corners; object 2: 3 contours x 4 corners
    assert_eq!(rows.len(), 2 * 4 + 3 * 4);
    assert_eq!(rows[0], (1, 1, 100.0, 0.0, 0.0));
    assert_eq!(rows[1], (1, 1, 120.0, 0.0, 0.0));
    assert_eq!(rows[2], (1, 1, 120.0, 10.0, 0.0));
    assert_eq!(rows[3], (1, 1, 100.0, 10.0, 0.0));
    assert_eq!((rows[4].0, rows[4].1), (1, 2));
    let obj2: Vec<_> = rows.iter().filter(|r| r.0 == 2).collect();
    let contours: Vec<(usize, f32)> = obj2.iter().step_by(4).map(|r| (r.1, r.4)).collect();
    assert_eq!(
        contours,
        vec![(1, 2.0), (2, 3.0), (3, 5.0)],
        "one contour per linked slice"
    );
    assert_eq!((obj2[1].2, obj2[1].3), (30.5, 20.0));
    assert!(
        text.lines().next().unwrap() == "1 1 100.00 0.00 0",
        "exact text: {text}"
    );

    let mut bad = objs.clone();
    bad[0].id = 0;
    assert!(matches!(
        write_imod_points(&path, &bad),
        Err(Error::Invalid(_))
    ));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn json_and_csv_round_trip() {
    let objs = two_objects();
    let dir = temp_dir("volume-writers");
    let names = ["__background__", "mitochondrion"];

    let jpath = dir.join("objects.json");
    write_objects_json(&jpath, &objs, &names).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&jpath).unwrap()).unwrap();
    let arr = v["objects"].as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["id"], 1);
    assert_eq!(
        arr[0]["class"], "class_2",
        "name list too short: fallback name"
    );
    assert_eq!(arr[1]["class"], "mitochondrion");
    assert_eq!(arr[1]["n_slices"], 3);
    let b3: Vec<f64> = arr[1]["bbox3d"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(b3, vec![10.0, 20.0, 2.0, 30.5, 40.0, 6.0]);
    assert_eq!(arr[1]["slices"][2]["z"], 5);
    assert_eq!(arr[0]["touches_first"], true);

    let cpath = dir.join("objects.csv");
    write_objects_csv(&cpath, &objs, &names).unwrap();
    let text = std::fs::read_to_string(&cpath).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "id,class,x1,y1,z1,x2,y2,z2,score,n_slices");
    assert_eq!(lines[2], "2,mitochondrion,10,20,2,30.5,40,6,0.8,3");
    assert_eq!(lines.len(), 3);

    let missing = dir.join("no_such_dir").join("x.csv");
    assert!(matches!(
        write_objects_csv(&missing, &objs, &names),
        Err(Error::Io { .. })
    ));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn label_volume_fills_boxes_and_interpolates_gaps() {
    // z 1 and 3 linked (3 bridged from 1), box grows from 4x2 to 8x2 px; z 2 interpolated (6x2).
    let mut stack = empty_stack(5);
    put(&mut stack, [1], sb([2.0, 1.0, 6.0, 3.0]));
    put(&mut stack, [3], sb([2.0, 1.0, 10.0, 3.0]));
    let objs = link_slices(&stack, &LinkConfig::default());
    assert_eq!(objs.len(), 1);
    let (nz, ny, nx) = (5, 4, 9); // x2 = 10 on z 3 is clipped to nx = 9
    let vol = label_volume(&objs, nz, ny, nx);
    assert_eq!(vol.dim(), (nz, ny, nx));
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let x2 = match z {
                    1 => 6,
                    2 => 8,
                    3 => 10,
                    _ => 0,
                };
                let inside = (1..3).contains(&y) && (2..x2).contains(&x);
                assert_eq!(vol[[z, y, x]], inside as u16, "voxel (z {z}, y {y}, x {x})");
            }
        }
    }
}

#[test]
fn label_volume_overlap_goes_to_higher_score() {
    let mut stack = empty_stack(1);
    put(&mut stack, [0], sbc([0.0, 0.0, 4.0, 4.0], 1, 0.9));
    put(&mut stack, [0], sbc([2.0, 0.0, 6.0, 4.0], 2, 0.5));
    let objs = link_slices(&stack, &LinkConfig::default());
    let vol = label_volume(&objs, 1, 4, 6);
    let row: Vec<u16> = vol.slice(ndarray::s![0, 0, ..]).to_vec();
    assert_eq!(row, vec![1, 1, 1, 1, 2, 2]);
}

// ---------------------------------------------------------------------------------------------
// Tilt files
// ---------------------------------------------------------------------------------------------

#[test]
fn tilt_angles_good_file() {
    let dir = temp_dir("volume-tilt_good");
    let path = dir.join("ts.tlt");
    std::fs::write(&path, "  -60.00\r\n-57.5\n\n   \n0\n  +3.0e1 \n60.00\n").unwrap();
    let a = read_tilt_angles(&path).unwrap();
    assert_eq!(a, vec![-60.0, -57.5, 0.0, 30.0, 60.0]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn tilt_angles_bad_files_name_file_and_line() {
    let dir = temp_dir("volume-tilt_bad");
    let cases = [
        ("junk.tlt", "-60\n-58\nabc\n", Some("line 3")),
        ("two.tlt", "-60\n-58 -56\n", Some("line 2")),
        ("nan.tlt", "\n\nNaN\n", Some("line 3")),
        ("huge.tlt", "1e30\n", Some("line 1")),
        ("empty.rawtlt", "\n  \n", None),
    ];
    for (name, text, line) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let err = read_tilt_angles(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Format { .. }), "{name}: {msg}");
        assert!(
            msg.contains(name),
            "{name}: message does not name the file: {msg}"
        );
        if let Some(line) = line {
            assert!(
                msg.contains(line),
                "{name}: message does not name {line}: {msg}"
            );
        }
    }
    let missing = dir.join("missing.tlt");
    assert!(matches!(read_tilt_angles(&missing), Err(Error::Io { .. })));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn tilt_file_is_found_beside_the_stack() {
    let dir = temp_dir("volume-tilt_find");
    let stack = dir.join("cell_7.st");
    std::fs::write(&stack, b"").unwrap();
    assert_eq!(tilt_file_for(&stack), None);
    std::fs::write(dir.join("cell_7.rawtlt"), "0\n").unwrap();
    assert_eq!(tilt_file_for(&stack), Some(dir.join("cell_7.rawtlt")));
    std::fs::write(dir.join("cell_7.tlt"), "0\n").unwrap();
    assert_eq!(
        tilt_file_for(&stack),
        Some(dir.join("cell_7.tlt")),
        ".tlt preferred"
    );
    assert_eq!(
        tilt_file_for(&dir.join("cell_7.mrc")),
        Some(dir.join("cell_7.tlt"))
    );
    assert_eq!(tilt_file_for(&dir.join("other.mrc")), None);
    std::fs::remove_dir_all(dir).ok();
}

// ---------------------------------------------------------------------------------------------
// Montage
// ---------------------------------------------------------------------------------------------

#[test]
fn montage_tiles_every_nth_slice_and_colours_boxes_by_object() {
    let (h, w) = (20usize, 30usize); // H != W
    let slices: Vec<(usize, Array2<f32>)> = (0..7)
        .map(|z| (z, Array2::from_elem((h, w), z as f32 / 10.0)))
        .collect();
    let mut stack = empty_stack(7);
    put(&mut stack, 0..7, sb([2.0, 2.0, 12.0, 12.0]));
    put(&mut stack, 4..7, sb([15.0, 5.0, 25.0, 15.0]));
    let objs = link_slices(&stack, &LinkConfig::default());
    assert_eq!(objs.len(), 2);
    // slices 0, 3, 6 in 2 columns: 2 x 2 grid, gap 4
    let img = montage(&slices, &objs, 3, 2);
    assert_eq!(
        (img.width(), img.height()),
        (2 * (30 + 4) + 4, 2 * (20 + 4) + 4)
    );
    let tile_origin = |k: u32| (4 + (k % 2) * 34, 4 + (k / 2) * 24);
    for (k, z) in [(0u32, 0usize), (1, 3), (2, 6)] {
        let (x0, y0) = tile_origin(k);
        // object 1's top-left corner pixel, object 1's interior keeps the slice's grey
        assert_eq!(img.get_pixel(x0 + 2, y0 + 2).0, object_color(1), "tile {k}");
        let g = (z as f32 / 10.0 * 255.0).round() as u8;
        assert_eq!(img.get_pixel(x0 + 7, y0 + 7).0, [g, g, g], "tile {k}");
        // object 2 only from z 4 on
        let p = img.get_pixel(x0 + 15, y0 + 5).0;
        assert_eq!(p == object_color(2), z >= 4, "tile {k}, z {z}: {p:?}");
    }
    // the empty fourth cell stays black
    let (x0, y0) = tile_origin(3);
    assert_eq!(img.get_pixel(x0 + 5, y0 + 5).0, [0, 0, 0]);
    assert_eq!(montage(&[], &objs, 1, 4).dimensions(), (0, 0));
}

// ---------------------------------------------------------------------------------------------
// Acceptance: ellipsoids
// ---------------------------------------------------------------------------------------------

/// An axis-aligned ellipsoid `((x-cx)/a)^2 + ((y-cy)/b)^2 + ((z-cz)/c)^2 <= 1`.
struct Ellipsoid {
    center: [f32; 3],
    semi: [f32; 3],
}

impl Ellipsoid {
    /// Box of the cross-section on slice z (the plane at z), if it is at least `min_radius`
    /// pixels in both semi-axes (smaller ones a detector does not see).
    fn section(&self, z: usize, min_radius: f32) -> Option<[f32; 4]> {
        let dz = (z as f32 - self.center[2]) / self.semi[2];
        let s = (1.0 - dz * dz).max(0.0).sqrt();
        let (rx, ry) = (self.semi[0] * s, self.semi[1] * s);
        (rx.min(ry) >= min_radius).then(|| {
            [
                self.center[0] - rx,
                self.center[1] - ry,
                self.center[0] + rx,
                self.center[1] + ry,
            ]
        })
    }
}

/// Synthesizes per-slice detections from ellipsoids: cross-section boxes with +-`JITTER` px
/// jitter, one missed interior slice per object, and a few random low-score false positives.
/// Returns the detections and the ground-truth 3D boxes with their slice counts.
fn synth_ellipsoids(seed: u64) -> (Slices, Vec<([f32; 6], usize)>) {
    const NZ: usize = 64;
    const JITTER: f32 = 1.5;
    const MIN_RADIUS: f32 = 4.0;
    const N_FALSE_POSITIVES: usize = 10;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut stack = empty_stack(NZ);
    let mut truth = Vec::new();
    // a 4 x 3 grid of cells 90 px apart, so neighbours come close but do not overlap
    for gy in 0..3 {
        for gx in 0..4 {
            let semi = [
                rng.gen_range(15.0..40.0),
                rng.gen_range(15.0..40.0),
                rng.gen_range(8.0..24.0),
            ];
            let center = [
                45.0 + 90.0 * gx as f32 + rng.gen_range(-3.0..3.0),
                45.0 + 90.0 * gy as f32 + rng.gen_range(-3.0..3.0),
                rng.gen_range(-4.0..NZ as f32 + 4.0), // some are cut by the stack's ends
            ];
            let e = Ellipsoid { center, semi };
            let present: Vec<(usize, [f32; 4])> = (0..NZ)
                .filter_map(|z| e.section(z, MIN_RADIUS).map(|b| (z, b)))
                .collect();
            if present.is_empty() {
                continue;
            }
            let mut t = [
                f32::INFINITY,
                f32::INFINITY,
                0.0,
                f32::NEG_INFINITY,
                f32::NEG_INFINITY,
                0.0,
            ];
            for (_, b) in &present {
                t[0] = t[0].min(b[0]);
                t[1] = t[1].min(b[1]);
                t[3] = t[3].max(b[2]);
                t[4] = t[4].max(b[3]);
            }
            t[2] = present[0].0 as f32;
            t[5] = (present[present.len() - 1].0 + 1) as f32;
            truth.push((t, present.len()));
            let missed =
                (present.len() >= 5).then(|| present[rng.gen_range(1..present.len() - 1)].0);
            for (z, b) in present {
                if Some(z) == missed {
                    continue;
                }
                let j: [f32; 4] = std::array::from_fn(|k| b[k] + rng.gen_range(-JITTER..JITTER));
                put(&mut stack, [z], sbc(j, 1, rng.gen_range(0.6..0.99)));
            }
        }
    }
    for _ in 0..N_FALSE_POSITIVES {
        let (x, y) = (rng.gen_range(0.0..330.0), rng.gen_range(0.0..240.0));
        let (w, h) = (rng.gen_range(8.0..40.0), rng.gen_range(8.0..40.0));
        put(
            &mut stack,
            [rng.gen_range(0..NZ)],
            sbc([x, y, x + w, y + h], 1, rng.gen_range(0.05..0.5)),
        );
    }
    (stack, truth)
}

#[test]
fn acceptance_ellipsoids_are_recovered() {
    for seed in 0..8 {
        let (stack, truth) = synth_ellipsoids(seed);
        let objs = link_slices(&stack, &LinkConfig::default());
        let mut report = Vec::new();
        let mut failed = false;
        for (t, n) in truth.iter().filter(|(_, n)| *n >= MIN_TRUE_SLICES) {
            let best = objs
                .iter()
                .map(|o| iou3d(t, &o.bbox3d))
                .fold(0.0f32, f32::max);
            report.push(format!("truth {t:?} ({n} slices): best 3D IoU {best:.3}"));
            failed |= best < MIN_IOU3D;
        }
        assert!(
            !failed,
            "seed {seed}: an object was not recovered:\n{}",
            report.join("\n")
        );
        // and nothing seen on >= 3 slices is spurious
        for o in objs.iter().filter(|o| o.n_slices() >= MIN_TRUE_SLICES) {
            let best = truth
                .iter()
                .map(|(t, _)| iou3d(t, &o.bbox3d))
                .fold(0.0f32, f32::max);
            assert!(
                best >= 0.5,
                "seed {seed}: spurious object {:?} (best IoU {best})",
                o.bbox3d
            );
        }
    }
}
