#!/usr/bin/env python3
"""Side-by-side detection benchmark: torchvision vs cryodet, same weights, input and threads.

    python3 tools/bench_torch.py --threads 2 --runs 5
    python3 tools/bench_torch.py --weights /tmp/perf_full.safetensors --input /tmp/perf_x600x800.safetensors
    python3 tools/bench_torch.py --mode train --threads 2 --runs 3      # one training step

--mode train times one training step on each side: forward in training mode, the four losses
and the backward pass of their sum to every trainable weight (torchvision's default training
configuration on both sides: 12000/2000 proposals before/after NMS, 256 sampled anchors, 512
sampled RoIs, trainable_backbone_layers = 3), on the same two ground-truth boxes as
benches/detect.rs --mode train. torch: model.train(), loss.backward(); cryodet:
train::grad::loss_and_grads. The optimizer update is not timed on either side.

Each side runs in its own subprocess (one warm-up detection, then --runs timed detections; the
median is reported); the parent reads each child's peak RSS from os.wait4's rusage (ru_maxrss,
KiB on Linux). The torchvision model is tools/torch_reference.py's build (load_weights) in eval
mode under torch.no_grad(), torch.set_num_threads(T). cryodet runs `benches/detect.rs --mode
detect` (built with `cargo bench --bench detect --no-run`), whose timed region is the same:
backbone, RPN, proposals, RoI head, postprocess (no file I/O, no weight loading).
GFLOP/s for both = cryodet's analytic FLOP count (convolutions and linear layers) / median time.
The 1-minute load average is printed before and after: the machine may be shared. CPU seconds
per detection (user + system, all threads, both sides) are printed too: on a loaded machine they
compare the work done better than wall time (both include spin-waiting of idle threads).

Missing weight/input files are made with tools/torch_reference.py random-weights / random-input.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def torch_child(args) -> None:
    """Runs in the child process: time the torchvision detection."""
    import torch

    sys.path.insert(0, HERE)
    import torch_reference as tr

    torch.set_num_threads(args.threads)
    model, _ = tr.load_weights(args.weights)
    x = tr.load_input(args.input)[0].contiguous()
    if args.mode == "train":
        torch_train_child(args, model, x)
        return
    if args.precision == "bf16":
        # torch's fast CPU mode: autocast to bfloat16 (oneDNN AMX kernels). torchvision's CPU
        # roi_pool needs one dtype for features and boxes, so the RoI pooling runs in f32.
        pool = model.roi_heads.box_roi_pool
        f32_forward = pool.forward

        def pool_f32(features, proposals, image_shapes):
            with torch.autocast("cpu", enabled=False):
                return f32_forward({k: v.float() for k, v in features.items()}, [p.float() for p in proposals],
                                   image_shapes)

        pool.forward = pool_f32
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            res = time_runs(args.runs, lambda i: model([x])[0])
    else:
        with torch.no_grad():
            res = time_runs(args.runs, lambda i: model([x])[0])
    det = res.pop("last")
    print(json.dumps(dict(res, detections=int(det["boxes"].shape[0]))))


def time_runs(runs: int, step) -> dict:
    """Calls step(i) for i = 0..runs (0 is the warm-up): median wall and CPU seconds of the
    timed calls, every wall time, and the last call's result ("last")."""
    times, cpu, out = [], [], None
    for i in range(runs + 1):
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = step(i)
        t = time.perf_counter() - t0
        if i > 0:
            times.append(t)
            cpu.append(time.process_time() - c0)
    times.sort()
    cpu.sort()
    return {"median_s": times[len(times) // 2], "cpu_s": cpu[len(cpu) // 2], "times": times, "last": out}


# The two ground-truth boxes of benches/detect.rs --mode train (x1, y1, x2, y2 in input pixels).
TRAIN_GT = [[100.0, 120.0, 300.0, 260.0], [420.0, 200.0, 560.0, 410.0]]


def torch_train_child(args, model, x) -> None:
    """Times one torchvision training step (forward + losses + backward), as cryodet's
    train::grad::loss_and_grads: trainable_backbone_layers = 3, default samplers."""
    import torch

    model.train()
    model.rpn._pre_nms_top_n["training"] = 12000
    model.rpn._post_nms_top_n["training"] = 2000
    import torch_grad as tg  # trainable(): torchvision's trainable_backbone_layers rule on cryodet names
    import torch_reference as tr

    for n, p in model.named_parameters():
        p.requires_grad_(tg.trainable(tr.to_cryodet_name(n), 3))
    target = {"boxes": torch.tensor(TRAIN_GT), "labels": torch.tensor([1, 1])}

    def step(i):
        torch.manual_seed(i)
        model.zero_grad(set_to_none=True)
        losses = model([x], [target])
        sum(losses.values()).backward()

    res = time_runs(args.runs, step)
    res.pop("last")
    print(json.dumps(res))


def torch_sgemm_rate(threads: int, n: int = 2048, runs: int = 5) -> float:
    """GFLOP/s of torch.mm on n x n x n float32 (its BLAS: oneDNN/MKL) with `threads` threads:
    what the framework's GEMM reaches on this CPU, to compare with the matrixmultiply sgemm rate
    that benches/detect.rs prints."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = time_runs(runs, lambda i: a @ b)["times"][0]  # sorted: the fastest run
    return 2.0 * n**3 / best / 1e9


def run_child(cmd, env=None):
    """(parsed JSON of the last stdout line, peak RSS in MiB, wall seconds)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=ROOT)
    out = p.stdout.read().decode()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with exit code {p.returncode}")
    line = [l for l in out.splitlines() if l.strip().startswith("{")][-1]
    return json.loads(line), ru.ru_maxrss / 1024.0, time.perf_counter() - t0


def cryodet_binary() -> str:
    out = subprocess.run(
        ["cargo", "bench", "--bench", "detect", "--no-run", "--message-format=json"],
        cwd=ROOT, check=True, stdout=subprocess.PIPE,
    ).stdout.decode()
    exe = None
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "detect" and msg.get("executable"):
            exe = msg["executable"]
    if exe is None:
        sys.exit("could not find the benches/detect.rs executable")
    return exe


def ensure_files(args) -> None:
    ref = [sys.executable, os.path.join(HERE, "torch_reference.py")]
    if not os.path.isfile(args.weights):
        subprocess.run(ref + ["random-weights", "--config", "full", "--out", args.weights], check=True)
    if not os.path.isfile(args.input):
        subprocess.run(ref + ["random-input", "--size", args.size, "--out", args.input], check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="/tmp/perf_full.safetensors")
    ap.add_argument("--input", default="/tmp/perf_x600x800.safetensors")
    ap.add_argument("--size", default="600x800", help="input size if --input must be made")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cryodet-bin", help="benches/detect.rs executable (default: build it)")
    ap.add_argument("--only", choices=["torch", "cryodet"], help="run one side only")
    ap.add_argument("--mode", choices=["detect", "train"], default="detect",
                    help="whole detection (default) or one training step")
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32",
                    help="bf16: torch under torch.autocast('cpu', bfloat16) against cryodet --precision bf16")
    ap.add_argument("--child", choices=["torch", "gemm"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "torch":
        torch_child(args)
        return 0
    if args.child == "gemm":
        print(json.dumps({"gflops": torch_sgemm_rate(args.threads)}))
        return 0

    ensure_files(args)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    env.pop("MATMUL_NUM_THREADS", None)
    load0 = os.getloadavg()
    res = {}
    if args.only != "cryodet":
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "torch", "--weights", args.weights,
               "--input", args.input, "--threads", str(args.threads), "--runs", str(args.runs),
               "--mode", args.mode, "--precision", args.precision]
        res["torch"] = run_child(cmd, env)
    if args.only != "torch":
        exe = args.cryodet_bin or cryodet_binary()
        cmd = [exe, "--mode", args.mode, "--json", "--weights", args.weights, "--input", args.input,
               "--threads", str(args.threads), "--runs", str(args.runs), "--precision", args.precision]
        res["cryodet"] = run_child(cmd, env)
    gemm = run_child([sys.executable, os.path.abspath(__file__), "--child", "gemm", "--threads", str(args.threads)], env)
    load1 = os.getloadavg()

    flops = res["cryodet"][0].get("flops") if "cryodet" in res else None
    what = "detection" if args.mode == "detect" else "training step (forward + losses + backward)"
    print(f"{what} ({args.precision}), input {args.input}, {args.threads} threads, median of {args.runs} runs (+1 warm-up)")
    print(f"load average (1 min) before {load0[0]:.2f}, after {load1[0]:.2f}")
    for name, (r, rss, _) in res.items():
        g = f"{flops / r['median_s'] / 1e9:7.1f} GFLOP/s" if flops else ""
        print(f"{name:8s} {r['median_s']:8.3f} s  {g}  CPU {r['cpu_s']:7.3f} s/{args.mode}  peak RSS {rss:8.1f} MiB  "
              f"({r.get('detections', '-')} detections; runs {', '.join(f'{t:.3f}' for t in r['times'])})")
    print(f"torch.mm 2048^3 (torch's BLAS) on {args.threads} threads: {gemm[0]['gflops']:.1f} GFLOP/s"
          " (compare: 'sgemm 2048^3' of cargo bench --bench detect, matrixmultiply)")
    if flops:
        print(f"analytic work: {flops / 1e9:.1f} GFLOP ({res['cryodet'][0]['proposals']} proposals)")
    if len(res) == 2:
        ratio = res["torch"][0]["median_s"] / res["cryodet"][0]["median_s"]
        print(f"torch_time / cryodet_time = {ratio:.2f}")
        cratio = res["torch"][0]["cpu_s"] / res["cryodet"][0]["cpu_s"]
        print(f"torch_cpu / cryodet_cpu = {cratio:.2f}  (CPU seconds per {args.mode}, user + system, all threads;"
              " less sensitive to other load than wall time, but counts spin-waiting)")
        print(f"peak RSS cryodet / torch = {res['cryodet'][1] / res['torch'][1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
