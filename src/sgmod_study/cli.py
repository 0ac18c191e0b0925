"""The command lines' error handling: every known failure is one line and its own exit code.

Shared by ``src/train.py`` and ``src/eval.py``: ``run_reporting_errors(run, cfg)`` inside the
``@hydra.main`` function, ``run_cli(main)`` around it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import TypeVar

from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from sgmod_study.errors import EXIT_CONFIG, EXIT_DIVERGED, EXIT_PRUNED, ConfigError, TrainingDiverged, exit_with

T = TypeVar("T")


def run_reporting_errors(run: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """``run(cfg)``; a known failure ends the process with one line on stderr and its exit code."""
    # the training libraries only once a run starts: --help and completion import this module too
    from lightning.pytorch.utilities.exceptions import MisconfigurationException
    from optuna import TrialPruned

    from sgmod_study.config_schema import hydra_error_line

    try:
        return run(cfg)
    except ConfigError as err:
        exit_with("error", err, EXIT_CONFIG)
    except OmegaConfBaseException as err:  # an interpolation that cannot be resolved
        exit_with("error", hydra_error_line(err), EXIT_CONFIG)
    except MisconfigurationException as err:  # Lightning's word for a trainer setting this machine cannot run
        exit_with("error", "Lightning cannot run these settings: " + " ".join(str(err).split()), EXIT_CONFIG)
    except TrainingDiverged as err:
        exit_with("diverged", err, EXIT_DIVERGED)
    except TrialPruned as err:
        exit_with("pruned", err, EXIT_PRUNED)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        # checkpoints and result.json are written to a temporary file and renamed: nothing whole is lost
        exit_with(
            "error",
            f"no space left on the device while writing into {cfg.output_dir}; the files written before are "
            "intact: free some space, then resume with ckpt_path=<run>/checkpoints/last.ckpt",
            1,
        )


def run_cli(main: Callable[[], object]) -> None:
    """``main()``, with Hydra's own configuration errors (unknown group option or key, unparsable
    override, unresolvable interpolation) as one ``error:`` line and exit code 2 like ours."""
    # Hydra prints these itself, over several lines, and exits with 1, unless HYDRA_FULL_ERROR=1
    # makes it raise them. Sweep trials and DDP's extra ranks inherit the variable and run it too;
    # any other exception keeps its (now complete) traceback.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        from sgmod_study.config_schema import hydra_error_line

        exit_with("error", hydra_error_line(err), EXIT_CONFIG)
    except (ValueError, TypeError) as err:
        if not _raised_inside_hydra(err):
            raise
        from sgmod_study.config_schema import hydra_error_line

        # e.g. `hparams_search=null`: Hydra's defaults list raises a plain ValueError for it
        hint = " (a config group cannot be set to null: leave the override out)" if "NoneType" in str(err) else ""
        exit_with("error", hydra_error_line(err) + hint, EXIT_CONFIG)


def _raised_inside_hydra(err: BaseException) -> bool:
    """Whether the innermost frame of ``err`` is Hydra's own code (composing the config), not a run's."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}hydra{os.sep}" in tb.tb_frame.f_code.co_filename
