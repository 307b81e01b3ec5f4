"""The measurement protocol shared by the throughput benchmarks (mlm_throughput.py,
image_throughput.py, wav2vec2_throughput.py): pt's side, a real `pt train` run, next to one or
more labelled PyTorch rows, in the same process and on the same device.

* Each side runs `--warmup` untimed steps (default 10: compilation, cuDNN autotuning and caching
  allocator growth fall there), then `--steps` timed steps (default 30).
* PyTorch rows: one timed region around the timed steps, with `torch.cuda.synchronize()` before
  and after it on CUDA and never inside it. pt: the run logs every gcd(warmup, steps) steps (a
  log line reads device values back, i.e. waits for the GPU); its rate is the wall time between
  the log lines at step `warmup` and `warmup + steps` of its metrics.jsonl.
* `--repeats` (default 3) repeats of both sides, the order alternated: pt first in repeats 1, 3,
  ..., PyTorch first in repeats 2, 4, .... The PyTorch models are built once and kept across
  repeats (each repeat warms up again); on CUDA their cached blocks are released
  (`torch.cuda.empty_cache`) before pt runs.
* Reported per row: median and min-max of the throughput over the repeats, the median relative to
  the best PyTorch row's median ("vs best PyTorch": pt's entry is the headline ratio), and MFU
  where the FLOPs per unit are known: median x FLOPs per unit / peak. Peak: bf16 dense tensor
  FLOP/s from the CUDA device name (the table pt's own run log uses; PT_PEAK_TFLOPS overrides
  it); blank on the CPU.

Output: a markdown table on stdout and, with `--json PATH`, the same as JSON.
"""
import argparse, json, math, os, platform, statistics, subprocess, sys, time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parent.parent
PT_BIN = os.environ.get("PT_BIN", str(REPO / "target/release/pt"))
DATA = Path(os.environ.get("PT_DATA") or Path.home() / ".cache/pt/data")
# bf16 dense tensor-core TFLOP/s by device-name fragment, as core/src/train/run_log.rs.
PEAK_TFLOPS = [("H200", 989.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0), ("A10", 125.0)]

PT_TIMED = "real pipeline (`pt train`)"
MODEL_ONLY = "model only (batch ready on device)"


def add_args(ap: argparse.ArgumentParser, compile_row: bool = False) -> None:
    """The protocol's flags: --warmup --steps --repeats --threads --device --json [--compile]."""
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps per side and repeat (default 10)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per side and repeat (default 30)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats, side order alternated (default 3)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    if compile_row:
        ap.add_argument("--compile", action="store_true",
                        help="add a torch.compile row (compilation falls in the warm-up steps)")


def check_args(args) -> None:
    if args.warmup < 1 or args.steps < 1 or args.repeats < 1:
        sys.exit("--warmup, --steps and --repeats must be >= 1")


# ---------------------------------------------------------------------------------------------
# Device
# ---------------------------------------------------------------------------------------------

def torch_device(args):
    """The PyTorch device for `--device`, with `--threads` intra-op threads."""
    import torch
    torch.set_num_threads(args.threads)
    return torch.device(args.device if args.device.startswith("cuda") else "cpu")


def device_name(args) -> str:
    if args.device.startswith("cuda"):
        import torch
        return torch.cuda.get_device_name(torch.device(args.device))
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    return f"{cpu}, {args.threads} threads"


def peak_flops(args) -> Optional[float]:
    """Peak FLOP/s of the CUDA device (bf16 dense), or None (CPU, unknown GPU)."""
    if not args.device.startswith("cuda"):
        return None
    if os.environ.get("PT_PEAK_TFLOPS"):
        return float(os.environ["PT_PEAK_TFLOPS"]) * 1e12
    name = device_name(args).upper()
    return next((t * 1e12 for k, t in PEAK_TFLOPS if k in name), None)


def synchronize(device) -> None:
    if device.type == "cuda":
        import torch
        torch.cuda.synchronize(device)


def forward_flops(model, *inputs) -> float:
    """FLOPs of one forward call as torch.utils.flop_counter counts them (matmuls and
    convolutions, 2 per multiply-add); build model and inputs on the meta device to count for
    free."""
    from torch.utils.flop_counter import FlopCounterMode
    import torch
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*inputs)
    return float(counter.get_total_flops())


# ---------------------------------------------------------------------------------------------
# The two sides
# ---------------------------------------------------------------------------------------------

@dataclass
class TorchRow:
    """One PyTorch configuration: `step()` runs one training step; `units` per step. An
    `optional` row (torch.compile) that raises is reported as failed instead of ending the run."""
    label: str
    step: Callable[[], None]
    units: float
    timed: str = MODEL_ONLY
    optional: bool = False


def time_row(row: TorchRow, args, device) -> float:
    """Units per second of `row` over `args.steps` steps after `args.warmup`."""
    for _ in range(args.warmup):
        row.step()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        row.step()
    synchronize(device)
    return row.units * args.steps / (time.perf_counter() - t0)


def pt_run_section(args, **extra) -> str:
    """The recipe's [run] and [checkpoint] tables for a benchmark run of pt."""
    lines = [f'device = "{args.device}"', f"batch_size = {args.batch}", f"max_steps = {args.warmup + args.steps}",
             f"log_every = {math.gcd(args.warmup, args.steps)}", f"num_threads = {args.threads}"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "[run]\n" + "\n".join(lines) + "\n[checkpoint]\nevery = 0\n"


def pt_seconds_per_step(recipe: str, work: Path, args, repeat: int) -> float:
    """Trains `recipe` with `pt train` in `work` and returns its wall seconds per step over the
    steps after warm-up (between the log lines at steps `warmup` and `warmup + steps`)."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "bench.toml"
    path.write_text(recipe)
    run_dir = work / f"run-{repeat}"
    done = subprocess.run([PT_BIN, "train", "--recipe", str(path), "--run-dir", str(run_dir), "--quiet"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"pt train failed (exit {done.returncode}):\n{done.stderr}")
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    wall = {r["step"]: r["wall_time"] for r in rows if "step_time_s" in r}
    return (wall[args.warmup + args.steps] - wall[args.warmup]) / args.steps


# ---------------------------------------------------------------------------------------------
# Repeats and report
# ---------------------------------------------------------------------------------------------

@dataclass
class Result:
    side: str
    label: str
    timed: str
    rates: list = field(default_factory=list)
    error: Optional[str] = None

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def measure(args, device, pt: Callable[[int], float], pt_units: float, rows: list) -> list:
    """Runs `args.repeats` repeats of pt (`pt(repeat)` returns seconds per step; `pt_units`
    units per step) and of the PyTorch `rows`, alternating which side goes first."""
    pt_result = Result("pt", "pt train", PT_TIMED)
    torch_results = [Result("PyTorch", r.label, r.timed) for r in rows]

    def run_pt(rep):
        pt_result.rates.append(pt_units / pt(rep))

    def run_torch(rep):
        for row, res in zip(rows, torch_results):
            if res.error:
                continue
            try:
                res.rates.append(time_row(row, args, device))
            except Exception as e:  # noqa: BLE001 (only optional rows; see TorchRow)
                if not row.optional:
                    raise
                res.error = f"{type(e).__name__}: {e}".splitlines()[0][:160]
                print(f"{row.label} failed: {res.error}", file=sys.stderr)
        if device.type == "cuda":
            import torch
            torch.cuda.empty_cache()  # leave the GPU's memory to pt

    for rep in range(args.repeats):
        order = (run_pt, run_torch) if rep % 2 == 0 else (run_torch, run_pt)
        for side in order:
            side(rep)
        done = ", ".join(f"{r.label} {fmt(r.rates[-1])}" for r in [pt_result] + torch_results if not r.error)
        print(f"repeat {rep + 1}/{args.repeats}: {done} per s", file=sys.stderr, flush=True)
    return [pt_result] + torch_results


def report(args, title: str, unit: str, results: list, flops_per_unit: Optional[float], flops_formula: str,
           config: dict) -> None:
    """Prints the markdown table and writes --json. `unit`: one item of the rates (token,
    image, frame); `results[0]` is pt's."""
    measured = [r for r in results if r.rates]
    best = max((r for r in measured if r.side == "PyTorch"), key=lambda r: r.median)
    peak = peak_flops(args)
    mfu = lambda r: r.median * flops_per_unit / peak if flops_per_unit and peak else None
    print(f"### {title}\n")
    print(f"device: {device_name(args)} ({args.device}); {args.warmup} warm-up + {args.steps} timed steps per side, "
          f"{args.repeats} repeat(s), order alternated (pt first in odd repeats)\n")
    print(f"| side | row | timed | median {unit}s/s | min-max | vs best PyTorch | MFU |")
    print("|---|---|---|---:|---|---:|---:|")
    for r in results:
        if not r.rates:
            print(f"| {r.side} | {r.label} | {r.timed} | failed: {r.error} | | | |")
            continue
        m = mfu(r)
        print(f"| {r.side} | {r.label} | {r.timed} | {fmt(r.median)} | {fmt(min(r.rates))}-{fmt(max(r.rates))} "
              f"| {r.median / best.median:.2f} | {'' if m is None else f'{100 * m:.1f} %'} |")
    print(f"\nratio pt / best PyTorch ({best.label}): {results[0].median / best.median:.2f}")
    if flops_per_unit:
        peak_text = f"peak {peak / 1e12:g} TFLOP/s (bf16 dense)" if peak else "no peak known for this device: MFU blank"
        print(f"MFU: {flops_formula} = {flops_per_unit / 1e6:.4g} MFLOP per {unit}; {peak_text}")
    if args.json:
        rows = [{"side": r.side, "label": r.label, "timed": r.timed, "rates": r.rates, "median": r.median,
                 "min": min(r.rates), "max": max(r.rates), "vs_best_torch": r.median / best.median, "mfu": mfu(r)}
                for r in measured]
        write_json(args, title=title, unit=f"{unit}s/s", config=config, flops_per_unit=flops_per_unit,
                   flops_formula=flops_formula, peak_flops=peak, best_torch_row=best.label,
                   ratio_pt_to_best_torch=results[0].median / best.median, rows=rows,
                   failed_rows={r.label: r.error for r in results if not r.rates})


def write_json(args, **fields) -> None:
    protocol = {"warmup": args.warmup, "steps": args.steps, "repeats": args.repeats,
                "order": "alternated, pt first in repeat 1"}
    out = {"device": device_name(args), "device_arg": args.device, "protocol": protocol, **fields}
    args.json.write_text(json.dumps(out, indent=2) + "\n")


def fmt(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"
