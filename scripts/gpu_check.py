"""The GPU check: what a CUDA machine has to measure for this project, in one command.

    python scripts/gpu_check.py              # on a CUDA machine, about 10 min on one H100
    python scripts/gpu_check.py --dry-run    # anywhere: the same steps at tiny sizes on the CPU
    python scripts/gpu_check.py --out docs/gpu_check/h100   # where gpu_check.json and .md go

Steps, each recorded with its status and time (a failed step is recorded and the next runs):

1. ``op``: Sgmod's forward+backward against torch.sigmoid and the eager expression at every
   activation size of the default models and one big conv (float32, bfloat16), the achieved
   memory bandwidth as a fraction of the device's peak, and from which size the compiled kernels
   beat the plain expression (what ``FUSED_MIN_ELEMENTS["cuda"]`` should be);
2. ``trials``: a 10-epoch default trial, plain, then adding ``data.on_device``, bf16-mixed,
   channels-last and ``speed.compile`` one after the other (--dry-run: the first and the fourth);
3. ``sweep``: finished trials per hour with 1, 2 and 4 trials per GPU (8 two-epoch trials each);
4. ``ddp``: a 2-epoch DDP run over the GPUs (2 at most; on a 1-GPU machine DDP with one process);
5. ``tests``: ``pytest -m gpu`` (on a CPU: every one of them skipped).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks import machine, op, run_checked, sweep

ROOT = Path(__file__).resolve().parents[1]
TRIAL_VARIANTS = {  # each adds to the one before
    "plain": [],
    "on_device": ["data.on_device=true"],
    "bf16": ["data.on_device=true", "trainer.precision=bf16-mixed"],
    "channels_last": ["data.on_device=true", "trainer.precision=bf16-mixed", "speed.channels_last=true"],
    "compile": [
        "data.on_device=true",
        "trainer.precision=bf16-mixed",
        "speed.channels_last=true",
        "speed.compile=default",
    ],
}


# --dry-run's trials: digits, a tiny CNN, 2 batches of each loop
TINY_RUN = [
    "data=digits",
    "model.channels=[8]",
    "model.hidden=16",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
]


def settings(dry_run: bool) -> dict:
    """What each step runs: the real sizes on CUDA, tiny ones on the CPU for --dry-run."""
    if dry_run:
        return {
            "device": "cpu",
            "op_sizes": ["ci"],
            "trial": [*TINY_RUN, "trainer=cpu"],
            # the first and the last but one: compiling the model on a CPU takes a minute
            "trial_variants": ["plain", "channels_last"],
            "sweep": sweep.SIZES["ci"],
            "sweep_trials": 1,
            "sweep_epochs": 1,
            "per_gpu": (1, 2),
            "ddp": [*TINY_RUN, "trainer=ddp_cpu"],
        }
    return {
        "device": "cuda",
        "op_sizes": ["models", "full"],
        "trial": ["trainer=gpu", "trainer.max_epochs=10"],
        "trial_variants": list(TRIAL_VARIANTS),
        "sweep": sweep.SIZES["full"],
        "sweep_trials": 8,
        "sweep_epochs": 2,
        "per_gpu": (1, 2, 4),
        "ddp": ["trainer=ddp", f"trainer.devices={min(2, torch.cuda.device_count())}", "trainer.max_epochs=2"],
    }


def check_op(s: dict, out: Path) -> dict:
    results = [op.run(size, device=s["device"]) for size in s["op_sizes"]]
    rows = [r for result in results for r in result["results"]]
    return {
        "bandwidth_limit": results[0]["bandwidth_limit"],
        "fused_min_elements": results[0]["fused_min_elements"],
        "fused_kernels": results[0]["fused_kernels"],
        "rows": rows,
        "fused_beats_plain_from": crossover(rows),
        "tables": [op.format_table(result) for result in results],
    }


def crossover(rows: list[dict]) -> dict[str, int | None]:
    """Per dtype, the smallest input size from which the compiled kernels beat the plain
    expression at every larger size measured; None when they never do."""
    found = {}
    for dtype in op.DTYPES:
        time_of = {(tuple(r["shape"]), r["variant"]): r["fwd_bwd_ms"] for r in rows if r["dtype"] == dtype}
        sizes = sorted({shape for shape, _ in time_of}, key=lambda shape: torch.Size(shape).numel(), reverse=True)
        smallest = None
        for shape in sizes:
            if time_of[shape, "fused"] >= time_of[shape, "plain"]:
                break
            smallest = torch.Size(shape).numel()
        found[dtype] = smallest
    return found


def check_trials(s: dict, out: Path) -> dict:
    runs = {}
    for name in s["trial_variants"]:
        overrides = TRIAL_VARIANTS[name]
        runs[name] = train_run([*s["trial"], *overrides, "trainer.enable_progress_bar=false"], out / "trials" / name)
    return {"runs": runs}


def train_run(overrides: list[str], run_dir: Path) -> dict:
    """python src/train.py with these overrides, timed; its metrics from result.json."""
    command = [sys.executable, str(ROOT / "src" / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
    started = time.monotonic()
    run_checked(command, ROOT)
    wall_s = time.monotonic() - started
    result = json.loads((run_dir / "result.json").read_text())
    return {"overrides": overrides, "wall_s": wall_s, "metrics": result.get("metrics", {})}


def check_sweep(s: dict, out: Path) -> dict:
    bench = dataclasses.replace(s["sweep"], n_trials=s["sweep_trials"], epochs=s["sweep_epochs"], device=s["device"])
    gpus = torch.cuda.device_count() if s["device"] == "cuda" else 0
    variants = [
        sweep.run_variant(bench, f"{k}_per_gpu", k, False, s["device"], gpus, out / "sweeps" / f"{k}_per_gpu")
        for k in s["per_gpu"]
    ]
    return {"gpus": gpus, "epochs": bench.epochs, "variants": variants}


def check_ddp(s: dict, out: Path) -> dict:
    return train_run([*s["ddp"], "trainer.enable_progress_bar=false"], out / "ddp")


def check_tests(s: dict, out: Path) -> dict:
    report = out / "pytest_gpu.xml"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "tests", "-q", f"--junitxml={report}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode not in (0, 5):  # 5: nothing collected
        raise RuntimeError(f"pytest -m gpu: {summary}")
    return {"summary": summary, "exit_code": done.returncode}


STEPS = {"op": check_op, "trials": check_trials, "sweep": check_sweep, "ddp": check_ddp, "tests": check_tests}


def run_check(dry_run: bool, out: Path, steps: list[str] | None = None) -> dict:
    s = settings(dry_run)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "check": "gpu",
        "dry_run": dry_run,
        "device": torch.cuda.get_device_name() if s["device"] == "cuda" else "cpu (dry run)",
        "gpus": torch.cuda.device_count(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "steps": {},
    }
    if steps:
        record["steps"] = earlier_steps(out / "gpu_check.json", record)
    for name in steps or STEPS:
        started = time.monotonic()
        try:
            entry = {"status": "ok", **STEPS[name](s, out)}
        except Exception as err:  # noqa: BLE001 - recorded; the other steps still run
            entry = {"status": "failed", "error": f"{type(err).__name__}: {err}"[:2000]}
        entry["seconds"] = time.monotonic() - started
        entry["date"] = time.strftime("%Y-%m-%d %H:%M")
        record["steps"].pop(name, None)  # a re-run step goes to the end, in the order it ran
        record["steps"][name] = entry
        print(f"[gpu_check] {name}: {entry['status']} ({entry['seconds']:.0f} s)", flush=True)
        (out / "gpu_check.json").write_text(json.dumps(record, indent=2))  # kept after every step
    (out / "gpu_check.md").write_text(markdown(record))
    return record


def earlier_steps(path: Path, record: dict) -> dict:
    """The steps of an earlier check in the same folder on the same kind of device, so that a
    check run in parts (``--steps``, one device session each) ends as one record."""
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text())
    same = all(earlier.get(key) == record[key] for key in ("dry_run", "device", "gpus"))
    if not same:
        print(f"[gpu_check] {path} is of another device ({earlier.get('device')}); starting a new record")
        return {}
    dated = {name: {"date": earlier["date"], **entry} for name, entry in earlier["steps"].items()}
    print(f"[gpu_check] kept from {path}: {', '.join(dated) or 'no steps'}")
    return dated


def markdown(record: dict) -> str:
    lines = [
        f"# GPU check: {record['device']}",
        "",
        f"{record['date']}; {record['gpus']} GPU(s); torch {record['machine']['torch']}; "
        f"{'dry run (tiny sizes, CPU)' if record['dry_run'] else 'full sizes'}. "
        "Produced by `python scripts/gpu_check.py`; the figures are in gpu_check.json.",
        "",
        "| step | status | seconds | ran |",
        "|---|---|---|---|",
    ]
    steps = record["steps"]
    lines += [f"| {name} | {e['status']} | {e['seconds']:.0f} | {e.get('date', '')} |" for name, e in steps.items()]
    for name, entry in steps.items():
        lines += ["", f"## {name}", ""]
        if entry["status"] != "ok":
            lines.append(f"failed: `{entry['error'].splitlines()[0]}`")
            continue
        lines += SECTIONS[name](entry)
    return "\n".join(lines) + "\n"


def _op_section(entry: dict) -> list[str]:
    limit = entry["bandwidth_limit"]
    lines = [
        f"Bandwidth limit {limit['gbps']:.0f} GB/s ({limit['source']}); sgmod fuses from "
        f"{entry['fused_min_elements']} elements; the compiled kernels beat the plain expression "
        + "; ".join(
            f"in {dtype} " + (f"from {size} elements" if size else "at none of the sizes measured")
            for dtype, size in entry["fused_beats_plain_from"].items()
        )
        + ".",
        "",
        "| shape | dtype | sigmoid ms | plain / sigmoid | fused / sigmoid | sgmod / sigmoid | sgmod % of bandwidth |",
        "|---|---|---|---|---|---|---|",
    ]
    keyed = {(tuple(r["shape"]), r["dtype"], r["variant"]): r for r in entry["rows"]}
    for shape, dtype in dict.fromkeys((tuple(r["shape"]), r["dtype"]) for r in entry["rows"]):
        floor = keyed[shape, dtype, "sigmoid"]["fwd_bwd_ms"]
        ratio = {v: keyed[shape, dtype, v]["fwd_bwd_ms"] / floor for v in ("plain", "fused", "sgmod")}
        share = 100 * keyed[shape, dtype, "sgmod"]["fraction_of_limit"]
        lines.append(
            f"| {'x'.join(map(str, shape))} | {dtype} | {floor:.3f} | {ratio['plain']:.2f} | {ratio['fused']:.2f} "
            f"| {ratio['sgmod']:.2f} | {share:.0f}% |"
        )
    return lines


def _trials_section(entry: dict) -> list[str]:
    lines = ["| variant (adds to the row above) | wall s | test/acc |", "|---|---|---|"]
    for name, run in entry["runs"].items():
        lines.append(f"| {name} | {run['wall_s']:.1f} | {run['metrics'].get('test/acc', float('nan')):.4f} |")
    return lines


def _sweep_section(entry: dict) -> list[str]:
    lines = [
        f"{entry['epochs']}-epoch trials on {entry['gpus']} GPU(s).",
        "",
        "| trials per GPU | wall s | finished trials / h |",
        "|---|---|---|",
    ]
    for v in entry["variants"]:
        lines.append(f"| {v['variant'].split('_')[0]} | {v['wall_s']:.0f} | {v['trials_per_hour']:.0f} |")
    return lines


def _ddp_section(entry: dict) -> list[str]:
    return [f"`{' '.join(entry['overrides'])}`: {entry['wall_s']:.1f} s, test/acc {entry['metrics'].get('test/acc')}"]


def _tests_section(entry: dict) -> list[str]:
    return [f"`pytest -m gpu`: {entry['summary']}"]


SECTIONS = {
    "op": _op_section,
    "trials": _trials_section,
    "sweep": _sweep_section,
    "ddp": _ddp_section,
    "tests": _tests_section,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks the check itself")
    parser.add_argument("--out", type=Path, default=Path("outputs/gpu_check"), help="folder for gpu_check.json/.md")
    parser.add_argument("--steps", nargs="+", choices=list(STEPS), help="only these steps (default: all)")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device is visible; --dry-run runs the check's steps at tiny sizes on the CPU")
    record = run_check(args.dry_run, args.out, args.steps)
    print(f"written: {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}")
    return 0 if all(e["status"] == "ok" for e in record["steps"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
