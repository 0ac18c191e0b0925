"""Train one configuration: python src/train.py activation=sgmod [other overrides].

Exit codes: 0 done, 2 bad configuration or missing data, 3 training diverged, 4 pruned by
the sweep this run is a trial of.
"""

import hydra
from omegaconf import DictConfig
from optuna import TrialPruned

from sgmod_study.errors import EXIT_CONFIG, EXIT_DIVERGED, EXIT_PRUNED, ConfigError, TrainingDiverged, exit_with
from sgmod_study.training import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        return train(cfg)
    except ConfigError as err:
        exit_with("error", err, EXIT_CONFIG)
    except TrainingDiverged as err:
        exit_with("diverged", err, EXIT_DIVERGED)
    except TrialPruned as err:
        exit_with("pruned", err, EXIT_PRUNED)


if __name__ == "__main__":
    main()
