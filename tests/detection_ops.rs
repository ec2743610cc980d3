//! The detection ops against torchvision 0.29 (torch 2.15, CPU), fixtures in tests/fixtures/ops/
//! made by `python3 tools/make_ops_fixtures.py` (the torch lines are quoted in each test).
//!
//! Run: `cargo test --release --test detection_ops -- --nocapture` (prints the max abs diff of
//! every comparison).

use std::collections::HashMap;
use std::time::Instant;

use cryodet::detection::anchors::{feature_stride, AnchorGenerator};
use cryodet::detection::box_coder::BoxCoder;
use cryodet::detection::nms::{batched_nms, box_iou, nms, nms_top_k};
use cryodet::detection::postprocess::{postprocess_detections, PostprocessConfig};
use cryodet::detection::proposals::{filter_proposals, ProposalConfig};
use cryodet::detection::roi_pool::{roi_pool_backward, roi_pool_forward};
use cryodet::testutil::{assert_close, compare, fixture_path, load_fixture, EXACT};
use ndarray::{Array1, Array2, ArrayD, ArrayView2, Ix2, Ix3};
use rand::{Rng, SeedableRng};

/// Box coordinates through exp / log / division: torch's vectorised exp and log differ from
/// libm's by an ulp or so; relative to the largest coordinate.
const BOX_TOL: f32 = 1e-6;
/// Regression targets (log of a ratio, divisions).
const ENCODE_TOL: f32 = 1e-6;
/// Sigmoid / softmax probabilities (one exp and a division, or a sum of K terms).
const SCORE_TOL: f32 = 1e-6;
/// Spatial scale used by the RoI pool fixtures (C4 features: stride 16).
const ROI_SCALE: f32 = 1.0 / 16.0;

type Fixture = HashMap<String, ArrayD<f32>>;

fn fixture(name: &str) -> Fixture {
    load_fixture(fixture_path(&format!("ops/{name}.safetensors")))
}

fn get<'a>(f: &'a Fixture, key: &str) -> &'a ArrayD<f32> {
    f.get(key)
        .unwrap_or_else(|| panic!("fixture has no tensor {key}"))
}

fn get2<'a>(f: &'a Fixture, key: &str) -> ArrayView2<'a, f32> {
    get(f, key)
        .view()
        .into_dimensionality::<Ix2>()
        .expect("2-d tensor")
}

fn get_vec(f: &Fixture, key: &str) -> Vec<f32> {
    get(f, key).iter().copied().collect()
}

/// Index tensors are stored as int64 (torch outputs) and read as f32 (exact below 2^24).
fn get_indices(f: &Fixture, key: &str) -> Vec<usize> {
    get(f, key).iter().map(|&v| v as usize).collect()
}

/// `assert_close` that also prints the max abs difference achieved.
#[track_caller]
fn check(name: &str, actual: ArrayD<f32>, expected: &ArrayD<f32>, rel_tol: f32) {
    assert_close(name, actual.view(), expected.view(), rel_tol);
    let (max_abs, _, _, _) = compare(actual.view(), expected.view(), rel_tol);
    eprintln!("{name}: max abs diff {max_abs:.3e} (tol {rel_tol:.0e} x max|b|)");
}

/// Exact equality of index lists, reporting the first difference.
#[track_caller]
fn check_indices(name: &str, actual: &[usize], expected: &[usize]) {
    if let Some(pos) = actual.iter().zip(expected).position(|(a, b)| a != b) {
        panic!(
            "{name}: first difference at {pos}: got {} expected {}",
            actual[pos], expected[pos]
        );
    }
    assert_eq!(
        actual.len(),
        expected.len(),
        "{name}: {} indices, expected {}",
        actual.len(),
        expected.len()
    );
    eprintln!("{name}: {} indices identical", actual.len());
}

fn scores_array(v: Vec<f32>) -> ArrayD<f32> {
    Array1::from(v).into_dyn()
}

// ---------------------------------------------------------------------------------------------
// Anchors

/// images = ImageList(torch.zeros(1, 3, 211, 275), [(211, 275)])
/// AnchorGenerator(sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))(images, [torch.zeros(1, 1, 13, 17)])[0]
#[test]
fn anchors_default_match_torchvision() {
    let f = fixture("anchors");
    let (sh, sw) = (feature_stride(211, 13), feature_stride(275, 17));
    assert_eq!((sh, sw), (16, 16), "211 // 13, 275 // 17");
    let a = AnchorGenerator::default().grid_anchors(13, 17, sh, sw);
    check(
        "anchors default",
        a.into_dyn(),
        get(&f, "default_anchors"),
        EXACT,
    );
}

/// custom = AnchorGenerator(sizes=((45, 83.0),), aspect_ratios=((0.7, 1.0, 3.0),))
/// custom.cell_anchors[0]; custom(images, [torch.zeros(1, 1, 9, 11)])[0]  (strides 23, 25;
/// size 45 at ratio 1 is the half-way case +-22.5 -> 22 with round half to even)
#[test]
fn anchors_custom_match_torchvision() {
    let f = fixture("anchors");
    let gen = AnchorGenerator {
        sizes: get_vec(&f, "custom_sizes"),
        ratios: get_vec(&f, "custom_ratios"),
    };
    assert_eq!(gen.num_anchors(), 6);
    check(
        "anchors custom base",
        gen.base_anchors().into_dyn(),
        get(&f, "custom_base"),
        EXACT,
    );
    let (sh, sw) = (feature_stride(211, 9), feature_stride(275, 11));
    assert_eq!((sh, sw), (23, 25));
    let a = gen.grid_anchors(9, 11, sh, sw);
    check(
        "anchors custom grid",
        a.into_dyn(),
        get(&f, "custom_anchors"),
        EXACT,
    );
}

// ---------------------------------------------------------------------------------------------
// Box coder

/// rpn, roi = BoxCoder((1., 1., 1., 1.)), BoxCoder((10., 10., 5., 5.))
/// encode_rpn = rpn.encode_single(gt, ref); encode_roi = roi.encode_single(gt, ref)
#[test]
fn box_coder_encode_matches_torchvision() {
    let f = fixture("box_coder");
    let (gt, reference) = (get2(&f, "gt"), get2(&f, "ref"));
    check(
        "encode rpn",
        BoxCoder::rpn().encode(gt, reference).into_dyn(),
        get(&f, "encode_rpn"),
        ENCODE_TOL,
    );
    check(
        "encode roi",
        BoxCoder::roi_head().encode(gt, reference).into_dyn(),
        get(&f, "encode_roi"),
        ENCODE_TOL,
    );
}

/// decode_rpn = rpn.decode_single(deltas, ref); decode_roi = roi.decode_single(deltas, ref)
/// decode_roi_k = roi.decode(deltas_k, [ref])   # [64, 3, 4]; rows 0..8 of deltas and 0..4 of
/// deltas_k have dw/dh far above log(1000/16) (clamped) or very negative (not clamped).
#[test]
fn box_coder_decode_matches_torchvision() {
    let f = fixture("box_coder");
    let (deltas, reference) = (get2(&f, "deltas"), get2(&f, "ref"));
    check(
        "decode rpn",
        BoxCoder::rpn().decode(deltas, reference).into_dyn(),
        get(&f, "decode_rpn"),
        BOX_TOL,
    );
    check(
        "decode roi",
        BoxCoder::roi_head().decode(deltas, reference).into_dyn(),
        get(&f, "decode_roi"),
        BOX_TOL,
    );
    let per_class = BoxCoder::roi_head().decode_per_class(get2(&f, "deltas_k"), reference);
    check(
        "decode roi per class",
        per_class.into_dyn(),
        get(&f, "decode_roi_k"),
        BOX_TOL,
    );
}

// ---------------------------------------------------------------------------------------------
// NMS

/// tie_keep_03 = nms(tie_boxes, tie_scores, 0.3); tie_keep_05 = nms(tie_boxes, tie_scores, 0.5)
/// tie_iou = box_iou(tie_boxes, tie_boxes)
/// (equal scores; IoU exactly 0.3f32, which torch's double threshold 0.3 suppresses; IoU exactly
/// 0.5, kept at 0.5; a duplicate box)
#[test]
fn nms_ties_and_threshold_boundaries_match_torchvision() {
    let f = fixture("nms");
    let (boxes, scores) = (get2(&f, "tie_boxes"), get_vec(&f, "tie_scores"));
    check_indices(
        "nms ties 0.3",
        &nms(boxes, &scores, 0.3),
        &get_indices(&f, "tie_keep_03"),
    );
    check_indices(
        "nms ties 0.5",
        &nms(boxes, &scores, 0.5),
        &get_indices(&f, "tie_keep_05"),
    );
    check(
        "box_iou ties",
        box_iou(boxes, boxes).into_dyn(),
        get(&f, "tie_iou"),
        EXACT,
    );
}

/// boxes = 2000 random boxes, scores = torch.round(torch.rand(2000) * 100) / 100 (many ties)
/// keep_05 = nms(boxes, scores, 0.5); keep_07 = nms(boxes, scores, 0.7)
/// iou_first64 = box_iou(boxes[:64], boxes[64:128])
#[test]
fn nms_random_boxes_match_torchvision() {
    let f = fixture("nms");
    let (boxes, scores) = (get2(&f, "boxes"), get_vec(&f, "scores"));
    let iou = box_iou(
        boxes.slice(ndarray::s![..64, ..]),
        boxes.slice(ndarray::s![64..128, ..]),
    );
    check(
        "box_iou random",
        iou.into_dyn(),
        get(&f, "iou_first64"),
        EXACT,
    );
    let keep_05 = get_indices(&f, "keep_05");
    check_indices("nms 0.5", &nms(boxes, &scores, 0.5), &keep_05);
    check_indices(
        "nms 0.7",
        &nms(boxes, &scores, 0.7),
        &get_indices(&f, "keep_07"),
    );
    // Early stop returns a prefix of the full result.
    check_indices(
        "nms_top_k 100",
        &nms_top_k(boxes, &scores, 0.5, 100),
        &keep_05[..100],
    );
}

/// small_keep = batched_nms(boxes[:600], scores[:600], small_labels, 0.5)   # coordinate trick
/// big_keep = batched_nms(boxes, big_scores, big_labels, 0.5)               # per-class path
#[test]
fn batched_nms_matches_torchvision_on_both_paths() {
    let f = fixture("nms");
    let boxes = get2(&f, "boxes");
    let scores = get_vec(&f, "scores");
    let small_labels = get_indices(&f, "small_labels");
    let small = batched_nms(
        boxes.slice(ndarray::s![..600, ..]),
        &scores[..600],
        &small_labels,
        0.5,
    );
    check_indices(
        "batched_nms 600 (coordinate trick)",
        &small,
        &get_indices(&f, "small_keep"),
    );
    let big = batched_nms(
        boxes,
        &get_vec(&f, "big_scores"),
        &get_indices(&f, "big_labels"),
        0.5,
    );
    check_indices(
        "batched_nms 2000 (per class)",
        &big,
        &get_indices(&f, "big_keep"),
    );
}

/// Straightforward greedy NMS, the kernel's loop verbatim (skips suppressed boxes, computes one
/// IoU at a time), to check the vectorised loop on data the fixture does not cover.
fn reference_nms(boxes: ArrayView2<f32>, scores: &[f32], thr: f64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&i, &j| scores[j].partial_cmp(&scores[i]).unwrap());
    let row = |i: usize| [boxes[[i, 0]], boxes[[i, 1]], boxes[[i, 2]], boxes[[i, 3]]];
    let mut suppressed = vec![false; scores.len()];
    let mut keep = Vec::new();
    for (oi, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[oi + 1..] {
            if !suppressed[j] && (cryodet::detection::nms::iou(&row(i), &row(j)) as f64) > thr {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// 6000 random boxes (the RPN's pre-NMS count at test time): the fast loop against the reference
/// loop, and the time it takes (printed).
#[test]
fn nms_6000_boxes_matches_reference_and_is_fast() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let n = 6000;
    let mut boxes = Array2::<f32>::zeros((n, 4));
    for mut b in boxes.outer_iter_mut() {
        let (x, y) = (rng.gen_range(0.0..1000.0f32), rng.gen_range(0.0..800.0f32));
        let (w, h) = (rng.gen_range(8.0..300.0f32), rng.gen_range(8.0..300.0f32));
        b.assign(&Array1::from(vec![x, y, x + w, y + h]));
    }
    let scores: Vec<f32> = (0..n).map(|_| rng.gen::<f32>()).collect();
    let t0 = Instant::now();
    let reps = 5;
    let mut keep = Vec::new();
    for _ in 0..reps {
        keep = nms(boxes.view(), &scores, 0.7);
    }
    let per_call = t0.elapsed().as_secs_f64() * 1e3 / reps as f64;
    eprintln!(
        "nms 6000 boxes @0.7: {per_call:.2} ms per call, {} kept",
        keep.len()
    );
    let t0 = Instant::now();
    let short = nms_top_k(boxes.view(), &scores, 0.7, 300);
    eprintln!(
        "nms_top_k 6000 boxes -> 300: {:.2} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    check_indices(
        "nms 6000 vs reference",
        &keep,
        &reference_nms(boxes.view(), &scores, 0.7),
    );
    check_indices("nms_top_k 300 prefix", &short, &keep[..300]);

    // RPN-like: 6000 of the 17100 default anchors of a 38 x 50 map (image 600 x 800), jittered
    // and clipped; they overlap heavily, so most are suppressed early.
    let anchors = AnchorGenerator::default().grid_anchors(38, 50, 16, 16);
    let mut rpn_boxes = Array2::<f32>::zeros((n, 4));
    for mut b in rpn_boxes.outer_iter_mut() {
        let a = anchors.row(rng.gen_range(0..anchors.nrows()));
        for k in 0..4 {
            let lim = if k % 2 == 0 { 800.0 } else { 600.0 };
            b[k] = (a[k] + rng.gen_range(-8.0..8.0f32)).clamp(0.0, lim);
        }
        if b[2] - b[0] < 1.0 || b[3] - b[1] < 1.0 {
            b.assign(&Array1::from(vec![0.0, 0.0, 16.0, 16.0]));
        }
    }
    let t0 = Instant::now();
    let mut rpn_keep = Vec::new();
    for _ in 0..reps {
        rpn_keep = nms(rpn_boxes.view(), &scores, 0.7);
    }
    let per_call = t0.elapsed().as_secs_f64() * 1e3 / reps as f64;
    eprintln!(
        "nms 6000 RPN-like boxes @0.7: {per_call:.2} ms per call, {} kept",
        rpn_keep.len()
    );
    check_indices(
        "nms 6000 RPN-like vs reference",
        &rpn_keep,
        &reference_nms(rpn_boxes.view(), &scores, 0.7),
    );
}

// ---------------------------------------------------------------------------------------------
// RoI pool

/// rois = torch.cat([zeros, boxes]) (10 RoIs: whole map, half-way corners 2.5 / -1.5 / -2.5, partly
/// and fully outside the map, tiny, inverted, fractional); x = torch.randn(1, 5, 11, 14) with
/// channel 1 in {0, 1, 2} (tied maxima) and channel 2 constant.
/// out = roi_pool(xg, rois, (ph, pw), 1/16)                       # [P, C, ph, pw]
/// _, argmax = torch.ops.torchvision.roi_pool(x, rois, 1/16, ph, pw)
/// out.backward(grad_out); grad_x = xg.grad[0]                      # grad_out = torch.randn
#[test]
fn roi_pool_forward_and_backward_match_torchvision() {
    let f = fixture("roi_pool");
    let x = get(&f, "x")
        .view()
        .into_dimensionality::<Ix3>()
        .expect("[C, H, W]");
    let (_, h, w) = x.dim();
    let rois = get2(&f, "rois");
    for (ph, pw) in [(4usize, 3usize), (7, 7)] {
        let (out, argmax) = roi_pool_forward(x, rois, ph, pw, ROI_SCALE);
        // Ours is [C, P, ph, pw]; torchvision's [P, C, ph, pw].
        let out_pc = out.view().permuted_axes([1, 0, 2, 3]).to_owned();
        let arg_pc = argmax
            .mapv(|a| a as f32)
            .permuted_axes([1, 0, 2, 3])
            .to_owned();
        check(
            &format!("roi_pool out {ph}x{pw}"),
            out_pc.into_dyn(),
            get(&f, &format!("out_{ph}x{pw}")),
            EXACT,
        );
        check(
            &format!("roi_pool argmax {ph}x{pw}"),
            arg_pc.into_dyn(),
            get(&f, &format!("argmax_{ph}x{pw}")),
            EXACT,
        );
        assert!(
            argmax.iter().any(|&a| a == -1),
            "fixture must contain empty bins"
        );

        let grad_out_pc = get(&f, &format!("grad_out_{ph}x{pw}"))
            .view()
            .into_dimensionality::<ndarray::Ix4>()
            .unwrap();
        let grad_out = grad_out_pc.permuted_axes([1, 0, 2, 3]);
        let grad_x = roi_pool_backward(grad_out, argmax.view(), h, w);
        // Same accumulation order as the kernel (RoI, then bin): bit-identical sums.
        check(
            &format!("roi_pool grad {ph}x{pw}"),
            grad_x.into_dyn(),
            get(&f, &format!("grad_x_{ph}x{pw}")),
            EXACT,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Proposals

/// anchors = AnchorGenerator default on image (211, 275), map 13 x 17 (1989 anchors)
/// rpn = RegionProposalNetwork(gen, RPNHead(1, 9), 0.7, 0.3, 256, 0.5, pre_nms_top_n=..., post_nms_top_n=...,
///                             nms_thresh=..., score_thresh=...).eval(); rpn.min_size = ...
/// proposals = rpn.box_coder.decode(deltas, [anchors]).view(1, -1, 4)
/// boxes, scores = rpn.filter_proposals(proposals, logits.view(1, -1), [(211, 275)], [1989])
/// configs: testing (6000, 300, 0.7, 1e-3, 0.0); custom (500, 50, 0.6, 40, 0.4)
#[test]
fn filter_proposals_matches_torchvision() {
    let f = fixture("proposals");
    let (anchors, deltas, logits) = (
        get2(&f, "anchors"),
        get2(&f, "deltas"),
        get_vec(&f, "logits"),
    );
    for name in ["testing", "custom"] {
        let c = get_vec(&f, &format!("{name}_config"));
        let cfg = ProposalConfig {
            pre_nms_top_n: c[0] as usize,
            post_nms_top_n: c[1] as usize,
            nms_thresh: c[2],
            min_size: c[3],
            score_thresh: c[4],
        };
        if name == "testing" {
            assert_eq!(cfg, ProposalConfig::testing());
        }
        let (boxes, scores) = filter_proposals(&logits, deltas, anchors, (211, 275), &cfg);
        check(
            &format!("proposals {name} boxes"),
            boxes.into_dyn(),
            get(&f, &format!("{name}_boxes")),
            BOX_TOL,
        );
        check(
            &format!("proposals {name} scores"),
            scores_array(scores),
            get(&f, &format!("{name}_scores")),
            SCORE_TOL,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Postprocess

/// heads = RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, score_thresh=0.05, nms_thresh=0.5,
///                  detections_per_img=100)
/// boxes, scores, labels = heads.postprocess_detections(logits, reg, [props], [(211, 275)])
/// cases: small (300 x K=3, logits quantised to halves: score ties), big (700 x K=3: > 1000
/// candidates, per-class NMS path), k2 (400 x K=2, background + one class)
#[test]
fn postprocess_detections_matches_torchvision() {
    let f = fixture("postprocess");
    let cfg = PostprocessConfig::default();
    for name in ["small", "big", "k2"] {
        let key = |s: &str| format!("{name}_{s}");
        let det = postprocess_detections(
            get2(&f, &key("logits")),
            get2(&f, &key("regression")),
            get2(&f, &key("proposals")),
            (211, 275),
            &cfg,
        );
        check_indices(
            &format!("postprocess {name} labels"),
            &det.labels,
            &get_indices(&f, &key("labels")),
        );
        check(
            &format!("postprocess {name} boxes"),
            det.boxes.into_dyn(),
            get(&f, &key("boxes")),
            BOX_TOL,
        );
        check(
            &format!("postprocess {name} scores"),
            scores_array(det.scores),
            get(&f, &key("scores")),
            SCORE_TOL,
        );
    }
}

/// The model's sizes (C4: 1024 channels, a 38 x 50 map for a 600 x 800 image, 300 RoIs, 14 x 14
/// bins): forward / backward time (printed), and the gradient sums to the upstream gradient of
/// the non-empty bins (every such bin sends its whole gradient to one cell).
#[test]
fn roi_pool_model_size_timing() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let (c, h, w, p, bins) = (1024, 38, 50, 300, 14);
    let x = ndarray::Array3::from_shape_fn((c, h, w), |_| rng.gen::<f32>());
    let mut rois = Array2::<f32>::zeros((p, 4));
    for mut r in rois.outer_iter_mut() {
        let (x1, y1) = (
            rng.gen_range(-20.0..780.0f32),
            rng.gen_range(-20.0..580.0f32),
        );
        let (bw, bh) = (rng.gen_range(16.0..400.0f32), rng.gen_range(16.0..400.0f32));
        r.assign(&Array1::from(vec![x1, y1, x1 + bw, y1 + bh]));
    }
    let t0 = Instant::now();
    let (out, argmax) = roi_pool_forward(x.view(), rois.view(), bins, bins, ROI_SCALE);
    let t_fwd = t0.elapsed().as_secs_f64() * 1e3;
    let grad_out = out.mapv(|v| v * 0.5 + 0.25);
    let t0 = Instant::now();
    let grad_x = roi_pool_backward(grad_out.view(), argmax.view(), h, w);
    let t_bwd = t0.elapsed().as_secs_f64() * 1e3;
    eprintln!(
        "roi_pool C={c} {h}x{w} P={p} {bins}x{bins}: forward {t_fwd:.1} ms, backward {t_bwd:.1} ms"
    );
    let routed: f64 = grad_out
        .iter()
        .zip(argmax.iter())
        .filter(|(_, &a)| a >= 0)
        .map(|(&g, _)| g as f64)
        .sum();
    let total: f64 = grad_x.iter().map(|&g| g as f64).sum();
    assert!(
        (routed - total).abs() <= 1e-6 * routed.abs(),
        "gradient mass {total} != {routed}"
    );
}
