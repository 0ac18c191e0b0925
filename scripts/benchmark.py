"""Speed benchmarks; each prints a table and writes JSON (outputs/benchmarks/<name>.json).

    python scripts/benchmark.py op            # Sgmod vs sigmoid, SiLU and the naive expression
    python scripts/benchmark.py step          # Lightning training step vs a plain PyTorch loop
    python scripts/benchmark.py sweep         # finished trials per hour: 1 vs k per GPU, pruning
    python scripts/benchmark.py startup       # where a 5-step run's time goes: ReLU vs Sgmod, warm/cold cache
    python scripts/benchmark.py op --size models  # every activation size of the default models
    python scripts/benchmark.py op --size ci  # tiny sizes (what the tests run)

Runs on CUDA when a GPU is visible, else on the CPU. docs/benchmarks.md has measured figures.
"""

import argparse
import importlib
import json
from pathlib import Path

BENCHMARKS = ("op", "step", "sweep", "startup")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=BENCHMARKS)
    parser.add_argument("--size", choices=("ci", "full", "models"), default="full", help="models: op only")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks"), help="folder for <benchmark>.json")
    args = parser.parse_args()
    module = importlib.import_module(f"benchmarks.{args.benchmark}")
    if args.size not in module.SIZES:
        parser.error(
            f"--size {args.size} is not a size of the {args.benchmark} benchmark; its sizes: {', '.join(module.SIZES)}"
        )
    runs_dir = {"out_dir": args.out / f"{args.benchmark}_runs"}
    options = runs_dir if args.benchmark in ("sweep", "startup") else {}
    result = module.run(size=args.size, **options)
    print(module.format_table(result))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.benchmark}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
