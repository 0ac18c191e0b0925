"""The Sgmod study, one named part at a time, resumable (see sgmod_study/study.py).

python scripts/study.py list
python scripts/study.py run controls [--time-limit SECONDS] [override ...]
python scripts/study.py run all [--time-limit SECONDS] [override ...]   # every unfinished part, in order
python scripts/study.py export controls
python scripts/study.py report          # docs/report/study.md from the committed records

list and report only read the records in study/ (they work on a read-only copy); run and export write them.
"""

import argparse
import math

from sgmod_study.errors import EXIT_CONFIG, EXIT_DISK, ConfigError, exit_with
from sgmod_study.study import PARTS, RecordNotWritable, export, finished, read_rows, record_dir, run, summary
from sgmod_study.study_report import write_study_report


def seconds(text: str) -> float:
    """--time-limit: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: it must be a number of seconds > 0")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors as one ``error:`` line and exit code 2, like every bad input of the toolkit
    (argparse prints its usage first; ``--help`` shows it)."""

    def error(self, message: str):
        exit_with("error", f"{self.prog}: {message}", EXIT_CONFIG)


def main() -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the parts, their questions and how far each has come")
    run_parser = commands.add_parser("run", help="run or resume a part, then refresh its runs.jsonl")
    run_parser.add_argument("part", help="a part's name, or all")
    run_parser.add_argument(
        "--time-limit", type=seconds, metavar="SECONDS", help="stop the sweep after this many seconds"
    )
    run_parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. hydra.sweeper.n_jobs=4")
    export_parser = commands.add_parser("export", help="refresh a part's runs.jsonl from its study and run folders")
    export_parser.add_argument("part")
    commands.add_parser("report", help="write docs/report/study.md from the committed records (no training)")
    # parse_known_args: Hydra overrides (key=value) may follow --time-limit, which plain
    # parse_args refuses once the positional list has been matched
    args, extra = parser.parse_known_args()
    unknown_options = [a for a in extra if a.startswith("-")]
    if unknown_options or (extra and args.command != "run"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "list":
            for name, p in PARTS.items():
                rows = read_rows(record_dir(name) / "runs.jsonl")
                print(f"{name:22s} {finished(name):3d}/{p.trials:<3d} {summary(rows):28s} {p.question}")
            return 0
        if args.command == "report":
            return report()
        if args.command == "export":
            rows = export(args.part)
            print(f"{args.part}: {summary(rows)}")
            return 0
        return run(args.part, [*args.overrides, *extra], args.time_limit)
    except ConfigError as err:
        exit_with("error", err, EXIT_CONFIG)
    except RecordNotWritable as err:
        exit_with("error", err, EXIT_DISK)


def report() -> int:
    try:
        write_study_report()
    except OSError as err:  # docs/report/ not writable (the records are only read)
        exit_with("error", f"{err.filename}: {err.strerror or err}", EXIT_DISK)
    print("written: docs/report/study.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
