//! Detection benchmark: per-stage wall time and GFLOP/s of the full-width network.
//!
//! ```text
//! cargo bench --bench detect                       # all stages, 2 threads, median of 5
//! cargo bench --bench detect -- --threads 1 --runs 3
//! cargo bench --bench detect -- --mode detect --runs 5 --json   # whole detection only (tools/bench_torch.py)
//! cargo bench --bench detect -- --mode train --runs 3            # one training step (loss_and_grads)
//! ```
//! Options: `--weights F` (default `$CRYODET_BENCH_WEIGHTS` or /tmp/perf_full.safetensors),
//! `--input F` (safetensors `input` [1, 3, H, W]; default /tmp/perf_x600x800.safetensors, or a
//! seeded random normal 600x800 input when that file is absent), `--threads T` (2), `--runs N` (5).
//! Make the files with
//! `python3 tools/torch_reference.py random-weights --config full --out /tmp/perf_full.safetensors`
//! and `python3 tools/torch_reference.py random-input --size 600x800 --out /tmp/perf_x600x800.safetensors`
//! (tools/bench.sh does this).
//!
//! FLOPs are counted analytically, `2 * Co * Ci * kh * kw * OH * OW * N` per convolution (and
//! `2 * N * I * O` per linear layer); everything else (pooling, NMS, epilogues) counts zero.
//! GFLOP/s is reported against the machine's sgemm rate measured here on a 2048^3 product.

use cryodet::backbone::{Bottleneck, Stage};
use cryodet::cli::trace::read_input;
use cryodet::detection::roi_pool::roi_pool_values;
use cryodet::model::FasterRcnn;
use cryodet::nn::conv::out_size;
use cryodet::nn::gemm::{gemm, set_threads, Mat};
use cryodet::nn::mean::spatial_mean;
use cryodet::nn::Conv2d;
use ndarray::{Array4, Axis};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::time::Instant;

struct Opts {
    weights: String,
    input: String,
    threads: usize,
    runs: usize,
    mode: String,
    json: bool,
    /// `--precision f32|bf16` (nn::gemm::set_precision).
    bf16: bool,
}

fn parse() -> Opts {
    let mut o = Opts {
        weights: std::env::var("CRYODET_BENCH_WEIGHTS")
            .unwrap_or_else(|_| "/tmp/perf_full.safetensors".into()),
        input: "/tmp/perf_x600x800.safetensors".into(),
        threads: 2,
        runs: 5,
        mode: "all".into(),
        json: false,
        bf16: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let val = || args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--weights" => o.weights = val(),
            "--input" => o.input = val(),
            "--threads" => o.threads = val().parse().expect("--threads N"),
            "--runs" => o.runs = val().parse().expect("--runs N"),
            "--mode" => o.mode = val(),
            "--precision" => o.bf16 = val() == "bf16",
            "--json" => {
                o.json = true;
                i += 1;
                continue;
            }
            // `cargo bench` passes `--bench`; ignore unknown flags.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

/// User + system CPU seconds of this process so far (all threads).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is always valid.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Median wall time of `runs` calls after one warm-up call.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut out = f();
    let mut ts = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        out = f();
        ts.push(t0.elapsed().as_secs_f64());
    }
    ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (ts[ts.len() / 2], out)
}

/// FLOPs of a convolution on input `[Ci, N, H, W]`, and the output dims.
fn conv_flops(
    c: &Conv2d,
    (_, n, h, w): (usize, usize, usize, usize),
) -> (f64, (usize, usize, usize, usize)) {
    let (co, ci, kh, kw) = c.weight.dim();
    let oh = out_size(h, kh, c.stride, c.padding);
    let ow = out_size(w, kw, c.stride, c.padding);
    (
        2.0 * (co * ci * kh * kw) as f64 * (oh * ow * n) as f64,
        (co, n, oh, ow),
    )
}

fn block_flops(
    b: &Bottleneck,
    d: (usize, usize, usize, usize),
) -> (f64, (usize, usize, usize, usize)) {
    let (f1, d1) = conv_flops(&b.conv1.fused, d);
    let (f2, d2) = conv_flops(&b.conv2.fused, d1);
    let (f3, d3) = conv_flops(&b.conv3.fused, d2);
    let fd = b
        .downsample
        .as_ref()
        .map_or(0.0, |ds| conv_flops(&ds.fused, d).0);
    (f1 + f2 + f3 + fd, d3)
}

fn stage_flops(
    s: &Stage,
    mut d: (usize, usize, usize, usize),
) -> (f64, (usize, usize, usize, usize)) {
    let mut f = 0.0;
    for b in &s.blocks {
        let (fb, db) = block_flops(b, d);
        f += fb;
        d = db;
    }
    (f, d)
}

struct Report {
    peak: f64,
    threads: usize,
}

impl Report {
    fn line(&self, name: &str, secs: f64, flops: f64) {
        let g = flops / secs / 1e9;
        println!(
            "{name:<40} {secs:>9.4} s  {:>8.2} GFLOP  {g:>7.1} GFLOP/s  {:>5.1}% of sgemm",
            flops / 1e9,
            100.0 * g / self.peak
        );
        let _ = self.threads;
    }
}

/// GFLOP/s of a 2048^3 sgemm (the attainable peak for our kernels).
fn sgemm_rate(runs: usize) -> f64 {
    let n = 2048;
    let a: Vec<f32> = (0..n * n).map(|i| ((i % 97) as f32) * 0.01).collect();
    let b = a.clone();
    let mut c = vec![0f32; n * n];
    let c0 = cpu_seconds();
    let (t, _) = time(runs, || {
        gemm(1.0, Mat::rows(&a, n, n), Mat::rows(&b, n, n), 0.0, &mut c);
    });
    let cpu = (cpu_seconds() - c0) / (runs.max(1) + 1) as f64;
    let flops = 2.0 * (n as f64).powi(3);
    eprintln!(
        "sgemm 2048^3: {:.1} GFLOP per CPU-second (per thread; load-insensitive)",
        flops / cpu / 1e9
    );
    flops / t / 1e9
}

fn load_input(path: &str) -> Array4<f32> {
    if std::path::Path::new(path).is_file() {
        read_input(std::path::Path::new(path)).expect("input file")
    } else {
        eprintln!("{path} not found: using a seeded random normal 600x800 input");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        Array4::from_shape_fn((3, 1, 600, 800), |_| StandardNormal.sample(&mut rng))
    }
}

fn main() {
    let o = parse();
    set_threads(o.threads);
    if o.bf16 {
        let p = cryodet::nn::gemm::set_precision(cryodet::nn::gemm::Precision::Bf16);
        eprintln!("precision: {}", p.name());
    }
    let model = match FasterRcnn::load(&o.weights) {
        Ok(m) => m,
        Err(e) => {
            eprintln!(
                "cannot load {}: {e}\nmake it with: python3 tools/torch_reference.py random-weights --config full --out {}",
                o.weights, o.weights
            );
            std::process::exit(2);
        }
    };
    let x = load_input(&o.input);
    let (_, _, h, w) = x.dim();

    // Analytic FLOPs.
    let (f_stem, d_stem) = conv_flops(&model.backbone.conv1.fused, x.dim());
    let pool = model.backbone.maxpool;
    let mut d = (
        d_stem.0,
        1,
        out_size(d_stem.2, pool.kernel, pool.stride, pool.padding),
        out_size(d_stem.3, pool.kernel, pool.stride, pool.padding),
    );
    let mut f_backbone = f_stem;
    let mut d_layer3_in = d;
    for (k, s) in model.backbone.layers.iter().enumerate() {
        if k == 2 {
            d_layer3_in = d;
        }
        let (f, dd) = stage_flops(s, d);
        f_backbone += f;
        d = dd;
    }
    let d_feat = d;
    let (f_rpn_conv, d_rpn) = conv_flops(&model.rpn.conv, d_feat);
    let f_rpn = f_rpn_conv
        + conv_flops(&model.rpn.cls_logits, d_rpn).0
        + conv_flops(&model.rpn.bbox_pred, d_rpn).0;
    let ps = model.config.pool_size;
    let head_flops = |p: usize| {
        let (f4, _) = stage_flops(&model.head.layer4, (d_feat.0, p, ps, ps));
        let c4 = model.head.layer4.out_channels();
        let k = model.num_classes();
        f4 + 2.0 * (p * c4 * 5 * k) as f64
    };

    if o.mode == "train" {
        // One training step's forward + backward (train::grad::loss_and_grads, default config:
        // 2000 proposals, 512 sampled RoIs) on two ground-truth boxes; seconds only.
        use cryodet::train::grad::{loss_and_grads, TrainConfig};
        let gt = ndarray::array![
            [100.0f32, 120.0, 300.0, 260.0],
            [420.0, 200.0, 560.0, 410.0]
        ];
        let cfg = TrainConfig::default();
        let mut times = Vec::new();
        let mut cpu = Vec::new();
        for i in 0..=o.runs {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
            let c0 = cpu_seconds();
            let t0 = Instant::now();
            let (losses, grads) = loss_and_grads(&model, &x, gt.view(), &[1, 1], &cfg, &mut rng);
            let t = t0.elapsed().as_secs_f64();
            std::hint::black_box((losses, grads.len()));
            if i > 0 {
                times.push(t);
                cpu.push(cpu_seconds() - c0);
            }
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        cpu.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (med, med_cpu) = (times[times.len() / 2], cpu[cpu.len() / 2]);
        if o.json {
            println!("{{\"median_s\": {med}, \"cpu_s\": {med_cpu}, \"times\": {times:?}}}");
        } else {
            println!(
                "train step: median {med:.4} s ({med_cpu:.3} CPU s) over {} runs",
                times.len()
            );
        }
        return;
    }

    if o.mode == "detect" {
        // Whole detection only: what tools/bench_torch.py compares with torchvision.
        let mut times = Vec::new();
        let mut cpu = Vec::new();
        let mut props = 0;
        let mut ndet = 0;
        for i in 0..=o.runs {
            let c0 = cpu_seconds();
            let t0 = Instant::now();
            let feat = model.backbone.forward(&x);
            let rpn = model.rpn.forward(&feat);
            let p = model.proposals(&rpn, (h, w), (h, w), (feat.dim().2, feat.dim().3));
            let dets = model.head.forward(&feat, &p, (h, w), &model.config, None);
            let t = t0.elapsed().as_secs_f64();
            props = p.nrows();
            ndet = dets.len();
            if i > 0 {
                times.push(t);
                cpu.push(cpu_seconds() - c0);
            }
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        cpu.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let med = times[times.len() / 2];
        let med_cpu = cpu[cpu.len() / 2];
        let flops = f_backbone + f_rpn + head_flops(props);
        if o.json {
            println!(
                "{{\"median_s\": {med}, \"cpu_s\": {med_cpu}, \"times\": {times:?}, \"proposals\": {props}, \"detections\": {ndet}, \"flops\": {flops}}}"
            );
        } else {
            println!(
                "detect: median {med:.4} s over {} runs, {props} proposals, {ndet} detections, {:.1} GFLOP/s",
                times.len(),
                flops / med / 1e9
            );
        }
        return;
    }

    let peak = sgemm_rate(o.runs.min(3));
    println!(
        "cryodet detection benchmark: input {h}x{w}, {} threads, median of {} runs (+1 warm-up)",
        o.threads, o.runs
    );
    println!("sgemm 2048^3: {peak:.1} GFLOP/s (machine nominal peak ~420 on 2 threads)");
    let r = Report {
        peak,
        threads: o.threads,
    };

    // layer3's convolutions, at the 600x800 shapes (input of layer3 from a real forward pass).
    let stem = model.backbone.stem(&x);
    let l1 = model.backbone.layers[0].forward(&stem);
    let l2 = model.backbone.layers[1].forward(&l1);
    assert_eq!(l2.dim(), d_layer3_in);
    let l3 = &model.backbone.layers[2];
    {
        let b0 = &l3.blocks[0];
        let (t, y1) = time(o.runs, || b0.conv1.forward(&l2, None, true));
        r.line(
            "layer3.0.conv1 1x1",
            t,
            conv_flops(&b0.conv1.fused, l2.dim()).0,
        );
        let (t, y2) = time(o.runs, || b0.conv2.forward(&y1, None, true));
        r.line(
            "layer3.0.conv2 3x3/2",
            t,
            conv_flops(&b0.conv2.fused, y1.dim()).0,
        );
        let ds = b0.downsample.as_ref().expect("layer3.0 has a downsample");
        let (t, id) = time(o.runs, || ds.forward(&l2, None, false));
        r.line(
            "layer3.0.downsample 1x1/2",
            t,
            conv_flops(&ds.fused, l2.dim()).0,
        );
        let (t, y3) = time(o.runs, || b0.conv3.forward(&y2, Some(&id), true));
        r.line(
            "layer3.0.conv3 1x1 +res",
            t,
            conv_flops(&b0.conv3.fused, y2.dim()).0,
        );
        let b1 = &l3.blocks[1];
        let (t, z1) = time(o.runs, || b1.conv1.forward(&y3, None, true));
        r.line(
            "layer3.1.conv1 1x1",
            t,
            conv_flops(&b1.conv1.fused, y3.dim()).0,
        );
        let (t, z2) = time(o.runs, || b1.conv2.forward(&z1, None, true));
        r.line(
            "layer3.1.conv2 3x3",
            t,
            conv_flops(&b1.conv2.fused, z1.dim()).0,
        );
        let (t, _) = time(o.runs, || b1.conv3.forward(&z2, Some(&y3), true));
        r.line(
            "layer3.1.conv3 1x1 +res",
            t,
            conv_flops(&b1.conv3.fused, z2.dim()).0,
        );
    }
    let (t, _) = time(o.runs, || model.backbone.stem(&x));
    r.line("stem (conv1 7x7/2 + maxpool)", t, f_stem);
    let (t, feat) = time(o.runs, || model.backbone.forward(&x));
    r.line("backbone (conv1 .. layer3)", t, f_backbone);
    let (t, rpn) = time(o.runs, || model.rpn.forward(&feat));
    r.line("RPN head convs", t, f_rpn);
    let fhw = (feat.dim().2, feat.dim().3);
    let (t, props) = time(o.runs, || model.proposals(&rpn, (h, w), (h, w), fhw));
    r.line("proposals (decode + NMS)", t, 0.0);
    let p = props.nrows();
    println!("  ({p} proposals)");
    let (t, pooled) = time(o.runs, || {
        roi_pool_values(
            feat.index_axis(Axis(1), 0),
            props.view(),
            ps,
            ps,
            model.config.spatial_scale,
        )
    });
    r.line("roi_pool 7x7", t, 0.0);
    let (t, y4) = time(o.runs, || model.head.layer4.forward(&pooled));
    r.line(
        "layer4 on all RoIs",
        t,
        stage_flops(&model.head.layer4, pooled.dim()).0,
    );
    let (t, _) = time(o.runs, || spatial_mean(&y4));
    r.line("spatial mean", t, 0.0);
    let (t, _) = time(o.runs, || {
        model
            .head
            .forward(&feat, &props, (h, w), &model.config, None)
    });
    r.line("RoI head (pool+layer4+pred+post)", t, head_flops(p));
    let (t, dets) = time(o.runs, || model.detect(&x));
    let total = f_backbone + f_rpn + head_flops(p);
    r.line("whole detection", t, total);
    println!(
        "  ({} detections; {:.1} GFLOP analytic)",
        dets.len(),
        total / 1e9
    );
}
