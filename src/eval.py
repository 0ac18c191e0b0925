"""Test a trained checkpoint: python src/eval.py ckpt_path=<run>/checkpoints/best-epochNNN.ckpt [trainer=cpu].

The task, networks and data set come from the checkpoint; conf/eval.yaml says where the data
are and what to run on. Prints the same summary as a training run. Exit codes: 0 done, 1 a
crash (with its traceback), 2 bad configuration, checkpoint, data override or missing data,
5 the output folder cannot be written, 130 and 143 stopped by SIGINT and SIGTERM.
"""

import hydra
from omegaconf import DictConfig

from sgmod_study.run.cli import run_reporting_errors, run_script
from sgmod_study.run.console import run_log


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> dict[str, float]:
    with run_log():
        from sgmod_study.run.evaluation import evaluate  # here, not at the top: see src/train.py

        return run_reporting_errors(evaluate, cfg)


def cli() -> None:
    """main(), with Hydra's own configuration errors, an output folder that cannot be written and
    a signal while starting as one line too."""
    run_script(main)


if __name__ == "__main__":
    cli()
