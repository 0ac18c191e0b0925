"""Every folder the toolkit reads or writes by default, in one place. They are relative to the
repository: its commands run there (a study's sweeps start src/train.py from it), so what a
record stores names no machine's path. Users move them with the options that say so
(hydra.run.dir, hydra.sweep.dir, hydra.sweeper.storage, scripts/study.py --record)."""

from pathlib import Path

CONF_DIR = Path("conf")  # Hydra's configs, one folder per config group
STUDY_CONF_DIR = CONF_DIR / "study"  # the declared studies: <name>.yaml
TRAIN_SCRIPT = Path("src") / "train.py"
OUTPUTS = Path("outputs")  # run folders and sweeps (git-ignored)
OPTUNA_DIR = OUTPUTS / "optuna"  # a sweep's journal when hydra.sweeper.storage is not given
STUDY_RUNS = OUTPUTS / "study"  # a study part's run folders: <study>/<part>/trial_NNNN/
STUDY_RECORDS = Path("study")  # the studies' committed records: <study>/<part>/
