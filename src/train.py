"""Train one configuration: python src/train.py activation=sgmod [other overrides]."""

import hydra
from omegaconf import DictConfig

from sgmod_study.errors import ConfigError
from sgmod_study.training import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        return train(cfg)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
