"""Train one configuration: python src/train.py activation=sgmod [other overrides].

Exit codes: 0 done, 2 bad configuration or missing data, 3 training diverged, 4 pruned by
the sweep this run is a trial of.
"""

import hydra
from omegaconf import DictConfig

from sgmod_study.cli import run_cli, run_reporting_errors
from sgmod_study.console import run_log


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    with run_log():
        # imported here, not at the top: --help and tab completion never call main(), and
        # importing torch and Lightning first made them take about 10 s
        from sgmod_study.training import train

        return run_reporting_errors(train, cfg)


def cli() -> None:
    """main(), with Hydra's own configuration errors as one line too."""
    run_cli(main)


if __name__ == "__main__":
    cli()
