"""Test a trained checkpoint: python src/eval.py ckpt_path=<run>/checkpoints/best-epochNNN.ckpt [trainer=cpu].

The task, networks and data set come from the checkpoint; conf/eval.yaml says where the data
are and what to run on. Prints the same summary as a training run. Exit codes: 0 done, 2 bad
configuration, checkpoint or missing data.
"""

import hydra
from omegaconf import DictConfig

from sgmod_study.cli import run_cli, run_reporting_errors
from sgmod_study.console import run_log


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> dict[str, float]:
    with run_log():
        from sgmod_study.evaluation import evaluate  # here, not at the top: see src/train.py

        return run_reporting_errors(evaluate, cfg)


def cli() -> None:
    """main(), with Hydra's own configuration errors as one line too."""
    run_cli(main)


if __name__ == "__main__":
    cli()
