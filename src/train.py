"""Train one configuration: python src/train.py activation=sgmod [other overrides].

Exit codes: 0 done, 1 a crash (with its traceback), 2 bad configuration or missing data,
3 training diverged, 4 pruned by the sweep this run is a trial of, 5 the output folder cannot
be written (full disk, read-only, no permission), 130 and 143 stopped by SIGINT and SIGTERM
(last.ckpt written; the printed line says how to resume).
"""

import hydra
from omegaconf import DictConfig

from sgmod_study.run.cli import run_reporting_errors, run_script
from sgmod_study.run.console import run_log


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    with run_log():
        # imported here, not at the top: --help and tab completion never call main(), and
        # importing torch and Lightning first made them take about 10 s
        from sgmod_study.run.resume import CommandLine
        from sgmod_study.run.training import train

        return run_reporting_errors(lambda c: train(c, CommandLine.from_hydra(c)), cfg)


def cli() -> None:
    """main(), with Hydra's own configuration errors, an output folder that cannot be written and
    a signal while starting as one line too."""
    run_script(main)


if __name__ == "__main__":
    cli()
