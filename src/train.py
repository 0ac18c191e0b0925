"""Train one configuration: python src/train.py activation=sgmod [other overrides].

Exit codes: 0 done, 2 bad configuration or missing data, 3 training diverged, 4 pruned by
the sweep this run is a trial of.
"""

import sys

import hydra
from omegaconf import DictConfig
from optuna import TrialPruned

from sgmod_study.errors import ConfigError, TrainingDiverged
from sgmod_study.sweeper import EXIT_PRUNED
from sgmod_study.training import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        return train(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except TrainingDiverged as err:
        print(f"diverged: {err}", file=sys.stderr)
        raise SystemExit(3) from None
    except TrialPruned as err:
        print(f"pruned: {err}", file=sys.stderr)
        raise SystemExit(EXIT_PRUNED) from None


if __name__ == "__main__":
    main()
