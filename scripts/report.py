"""Turn run folders into a report: python scripts/report.py <run or sweep folders...> [options].

    python scripts/report.py outputs/multirun/2026-11-25_10-00-00 --group-by activation.name \
        --metric test/acc --baseline relu --out docs/report

Reads what the runs wrote (.hydra/config.yaml, result.json); trains nothing.
"""

import argparse
from pathlib import Path

from sgmod_study.errors import EXIT_CONFIG, ConfigError, exit_with
from sgmod_study.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="run folders, or folders that contain them")
    parser.add_argument("--group-by", nargs="+", default=["activation.name"], help="config keys of a configuration")
    parser.add_argument("--metric", default="test/acc")
    parser.add_argument("--baseline", required=True, help="the label of the baseline group, e.g. relu")
    parser.add_argument("--out", type=Path, default=Path("outputs/report"))
    parser.add_argument("--where", nargs="*", default=[], metavar="KEY=VALUE", help="keep only these runs")
    args = parser.parse_args()
    where = dict(item.split("=", 1) for item in args.where)
    try:
        print(write_report(args.paths, args.group_by, args.metric, args.baseline, args.out, where))
    except ConfigError as err:
        exit_with("error", err, EXIT_CONFIG)
    print(f"\nwritten: {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
