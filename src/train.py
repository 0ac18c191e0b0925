"""Train one configuration: python src/train.py activation=sgmod [other overrides].

Exit codes: 0 done, 2 bad configuration or missing data, 3 training diverged.
"""

import sys

import hydra
from omegaconf import DictConfig

from sgmod_study.errors import ConfigError, TrainingDiverged
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


if __name__ == "__main__":
    main()
