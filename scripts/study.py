"""The toolkit's studies (conf/study/<name>.yaml), one command line for all of them.

python scripts/study.py list [STUDY]                    # the studies, their parts, how far each is, time left
python scripts/study.py run STUDY PART|all [--time-limit SECONDS] [override ...]
python scripts/study.py run classifier all --activation NAME   # your activation against the tuned baselines
python scripts/study.py report [STUDY] [--activation NAME]     # the report from the records, no training

Records live in study/<study>/<part>/ (committed); --record DIR keeps them in DIR/<study>/<part>/
instead (the study's committed baselines are still read from study/). list and report only read
the records; run writes them and refreshes each part's runs.jsonl as it ends.
"""

import argparse
import math
from pathlib import Path

from sgmod_study.errors import EXIT_CONFIG, EXIT_DISK, ConfigError, exit_with
from sgmod_study.paths import CONF_DIR, STUDY_RECORDS
from sgmod_study.study.record import Record, RecordNotWritable, cpu_here, pace_here, summary, time_left
from sgmod_study.study.spec import Study, load_study, names, with_activation


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


def parser() -> OneLineParser:
    top = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    listing = commands.add_parser("list", help="the studies' parts, their questions and how far each has come")
    listing.add_argument("study", nargs="?")
    run = commands.add_parser("run", help="run or resume parts (or all), then refresh their runs.jsonl")
    run.add_argument("study")
    run.add_argument("part", help="a part's name, several comma-separated (started in that order), or all")
    run.add_argument("--time-limit", type=seconds, metavar="SECONDS", help="stop the sweeps after this many seconds")
    run.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. hydra.sweeper.n_jobs=4")
    report = commands.add_parser("report", help="write the studies' reports from their records (no training)")
    report.add_argument("study", nargs="?")
    for each in (listing, run, report):
        each.add_argument("--record", type=Path, metavar="DIR", help=f"the records' folder (default: {STUDY_RECORDS})")
        each.add_argument("--activation", metavar="NAME", help="your activation (conf/activation/NAME.yaml)")
    return top


def main() -> int:
    # parse_known_args: Hydra overrides (key=value) may follow --time-limit, which plain
    # parse_args refuses once the positional list has been matched
    args, extra = parser().parse_known_args()
    unknown_options = [a for a in extra if a.startswith("-")]
    if unknown_options or (extra and args.command != "run"):
        parser().error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        studies = [_study(args.study, args.activation)] if args.study else [load_study(n) for n in names()]
        if args.activation and not args.study:
            raise ConfigError("--activation needs the study to run it through, e.g. scripts/study.py report classifier")
        if args.command == "list":
            return list_parts(studies, args.record)
        if args.command == "report":
            return report(studies, args.record)
        return run(studies[0], args.part, [*args.overrides, *extra], args.time_limit, args.record)
    except ConfigError as err:
        exit_with("error", err, EXIT_CONFIG)
    except RecordNotWritable as err:
        exit_with("error", err, EXIT_DISK)


def _study(name: str, activation: str | None) -> Study:
    study = load_study(name)
    if activation is None:
        return study
    from sgmod_study.nn.activation_configs import declared_search

    return with_activation(study, activation, declared_search(activation, CONF_DIR))


def record_of(study: Study, folder: Path | None) -> Record:
    """The study's records: study/<study>/, or DIR/<study>/ reading the baselines from study/."""
    repository = STUDY_RECORDS / study.record
    return Record(repository) if folder is None else Record(folder / study.record, shared=repository)


def list_parts(studies: list[Study], folder: Path | None) -> int:
    from sgmod_study.study.runner import starts_next

    lines = []  # all read before any is printed: a corrupted record gives its one error line alone
    for study in studies:
        record = record_of(study, folder)
        lines.append(f"{study.name}: {study.question}")
        width = max(len(name) for name in study.parts)
        for name, part in study.parts.items():
            done = f"{record.finished(name):3d}/{part.trials:<3d}"
            lines.append(f"  {name:{width}s} {part.kind:8s} {done} {summary(record.rows(name)):38s} {part.question}")
        lines.append(f"  {time_left(study, record)}")
        if pace := pace_here(study, record, cpu_here()):
            lines.append(f"  {pace}")
        if following := starts_next(study, record):
            lines.append(f"  {following}")
    print("\n".join(lines))
    return 0


def report(studies: list[Study], folder: Path | None) -> int:
    from sgmod_study.study.report.document import write_report

    for study in studies:
        record = record_of(study, folder)
        if study.activation is not None:
            from sgmod_study.study.reuse import check_reusable

            check_reusable(study, record)
        out = Path(study.report) if folder is None else folder / Path(study.report).name
        try:
            write_report(study, record, out=out)
        except OSError as err:  # the report's folder is not writable (the records are only read)
            exit_with("error", f"{err.filename}: {err.strerror or err}", EXIT_DISK)
        print(f"written: {out}")
    return 0


def run(study: Study, part: str, overrides: list[str], time_limit: float | None, folder: Path | None) -> int:
    from sgmod_study.study.runner import run as run_part

    record = record_of(study, folder)
    if study.activation is not None:
        from sgmod_study.study.reuse import check_reusable, planned_setup

        sweep = study.parts[f"sweep_{study.activation}"]
        check_reusable(study, record, planned_setup(study, sweep, record, overrides))
    return run_part(study, record, part, overrides, time_limit)


if __name__ == "__main__":
    raise SystemExit(main())
