"""Checkpoints that survive a crash, a full disk and a resume into a new run folder.

- ``write_atomic``: a file is replaced whole or not at all (temporary file in the same folder,
  fsync, ``os.replace``); used for checkpoints and ``result.json``.
- ``AtomicCheckpointIO``: Lightning's checkpoint writer through ``write_atomic``.
- ``ResumableCheckpoint``: a ``ModelCheckpoint`` that keeps the best checkpoint of the run it
  resumes, so the resumed run tests the best epoch even when that came before the interruption,
  and writes last.ckpt when SIGTERM or SIGINT stop the run.
- ``read_checkpoint``, ``check_weights_fit``: refuse a ``ckpt_path`` that is no checkpoint of this
  toolkit, or one whose weights do not fit.
- ``rebuild_task``: a run's task module from its checkpoint alone, for evaluation
  (``Classifier.load_from_checkpoint``, ``src/eval.py``).
"""

from __future__ import annotations

import ast
import io
import os
import secrets
import shutil
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from sgmod_study.data import DatasetSpec, dataset_spec
from sgmod_study.errors import ConfigError
from sgmod_study.tasks.registry import TASKS

# Hyperparameters that decide the networks' weights: a checkpoint fits only if they agree.
MODEL_KEYS = ("model.", "activation.", "norm.", "data.name")


def write_atomic(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """``write(file)`` into a temporary file next to ``path``, fsync it, then rename it over ``path``.

    A crash or a full disk half-way leaves the previous ``path`` untouched and no temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        # os.open with 0o666, not mkstemp's 0o600: the file gets the usual umask permissions
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)  # makes the rename itself durable


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode()))


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's TorchCheckpointIO, but each checkpoint is written by ``write_atomic``.

    Lightning's own save stages the file in the system temp folder and copies it over when that
    is another filesystem, without fsync: a full disk can leave a truncated ``last.ckpt``.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        # serialised in memory first: torch's zip writer turns a full disk into a RuntimeError
        # ("unexpected pos") that no longer says ENOSPC; a plain write raises the OSError itself
        data = io.BytesIO()
        torch.save(checkpoint, data)
        write_atomic(Path(path), lambda f: f.write(data.getbuffer()))


class ResumableCheckpoint(ModelCheckpoint):
    """Resuming into a new folder keeps the old run's best checkpoint as the best so far.

    Lightning's ModelCheckpoint forgets the best score when its folder changes ("dirpath has
    changed"), so the resumed run would test the best of its own epochs only. Here the old best
    file is copied into the new folder and stays the best until a better epoch replaces it.
    """

    def __init__(self, *args, resumed_from: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resumed_from = resumed_from
        self.fitting = True

    @property
    def state_key(self) -> str:
        # the plain ModelCheckpoint's key, so checkpoints written before this class still resume
        return "ModelCheckpoint" + super().state_key.removeprefix(type(self).__qualname__)

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self.fitting = stage == "fit"

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # Lightning 2.6 writes last.ckpt only in epochs that save a best checkpoint; a resume from
        # it would silently redo every epoch since the last improvement.
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # SIGTERM or SIGINT (sgmod_study.run.interrupts): Lightning stopped at the end of a step, where
        # the loop state is whole; last.ckpt resumes from there
        if isinstance(exception, SIGTERMException) and self.fitting and not trainer.sanity_checking:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self.fitting:  # trainer.test(ckpt_path=...) restores callbacks too; keep what fit left
            return
        same_folder = state_dict.get("dirpath") == self.dirpath
        with warnings.catch_warnings():  # Lightning's "dirpath has changed ... won't be reloaded": we reload here
            warnings.filterwarnings("ignore", message="The dirpath has changed")
            super().load_state_dict(state_dict)
        if same_folder or not state_dict.get("best_model_path") or state_dict.get("best_model_score") is None:
            return
        old_best = self._find_old_best(state_dict["best_model_path"])
        new_best = str(Path(self.dirpath) / old_best.name)
        _copy_atomic(old_best, Path(new_best))
        score = state_dict["best_model_score"]
        self.best_model_path, self.best_model_score = new_best, score
        self.best_k_models = {new_best: score}
        self.kth_best_model_path, self.kth_value = new_best, score

    def _find_old_best(self, recorded: str) -> Path:
        """The old best file next to the resumed checkpoint (the run folder may have moved), else where recorded."""
        candidates = [Path(recorded)]
        if self.resumed_from is not None:
            candidates.insert(0, Path(self.resumed_from).parent / Path(recorded).name)
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise ConfigError(
            f"ckpt_path={self.resumed_from}: the best checkpoint of its run ({Path(recorded).name}) is neither next "
            f"to it nor at {recorded}; the resumed run could not test its best epoch (put the file back)"
        )


def _copy_atomic(source: Path, target: Path) -> None:
    with source.open("rb") as f:
        write_atomic(target, lambda out: shutil.copyfileobj(f, out))


def read_checkpoint(ckpt_path: str, map_location: Any = "cpu") -> dict:
    """Load ``ckpt_path`` (tensors and plain types only) if it is a training checkpoint of this toolkit."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path} is not an existing checkpoint file (e.g. <run>/checkpoints/last.ckpt)"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # random bytes, a text file, a damaged zip, a pickle of arbitrary objects
        reason = (str(err).splitlines() or [""])[0][:160]
        raise ConfigError(
            f"ckpt_path={ckpt_path} is not a checkpoint: torch.load failed ({type(err).__name__}: {reason}); "
            "give a <run>/checkpoints/*.ckpt file"
        ) from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "loops"} <= checkpoint.keys():
        raise ConfigError(
            f"ckpt_path={ckpt_path} is a PyTorch file but not a Lightning training checkpoint "
            "(no state_dict and loop state); give a <run>/checkpoints/*.ckpt file"
        )
    if "task.name" not in (checkpoint.get("hyper_parameters") or {}):
        raise ConfigError(f"ckpt_path={ckpt_path} is a Lightning checkpoint of another program (no task.name in it)")
    return checkpoint


def saved_config(checkpoint: Mapping) -> dict:
    """The resolved config a checkpoint's run was built from, read back from its hyperparameters.

    Those are the flat dict the loggers show (``training.train`` saves ``flatten_config(c)``),
    where lists and None were written as their ``str()``. The data locations (``data.data_dir``
    ...) are not in it: they belong to the machine, not to the run.
    """
    config: dict = {}
    for key, value in checkpoint["hyper_parameters"].items():
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = _saved_value(value)
    return config


def _saved_value(value: Any) -> Any:
    if value == "None":
        return None
    if isinstance(value, str) and value.startswith("["):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):  # a string that only starts like a list
            return value
    return value


TaskBuilder = Callable[[Mapping, DatasetSpec], L.LightningModule]


def rebuild_task(
    checkpoint: dict, ckpt_path: str, builders: Mapping[str, TaskBuilder] | None = None, strict: bool = True
) -> L.LightningModule:
    """The task module of a run, built by ``builders[<its task>]`` (by default: every task of
    ``sgmod_study.tasks.registry``) from the config saved in its checkpoint (``read_checkpoint``),
    with the checkpoint's weights and hyperparameters, on the device the weights were loaded to."""
    if builders is None:
        builders = {name: task.build for name, task in TASKS.items()}
    saved = checkpoint["hyper_parameters"]
    task = saved["task.name"]
    if task not in builders:
        raise ConfigError(f"ckpt_path={ckpt_path} is a checkpoint of task={task}, not of task={' or '.join(builders)}")
    c = saved_config(checkpoint)
    module = builders[task](c, dataset_spec(c["data"]["name"]))
    module.load_state_dict(checkpoint["state_dict"], strict=strict)
    module.save_hyperparameters(saved)
    weights = [t for t in checkpoint["state_dict"].values() if isinstance(t, torch.Tensor)]
    return module.to(weights[0].device) if weights else module


def check_weights_fit(checkpoint: Mapping, ckpt_path: str, hparams: Mapping[str, Any], module: torch.nn.Module) -> None:
    """Refuse a checkpoint whose weights have other shapes than ``module``'s (built from ``hparams``)."""

    def shapes(weights: Mapping) -> dict:
        return {k: tuple(v.shape) for k, v in weights.items() if isinstance(v, torch.Tensor)}

    if shapes(checkpoint["state_dict"]) == shapes(module.state_dict()):
        return
    saved = checkpoint["hyper_parameters"]
    differing = [
        f"{key}={saved[key]!r} (this run: {hparams[key]!r})"
        for key in sorted(set(saved) & set(hparams))
        if key.startswith(MODEL_KEYS) and saved[key] != hparams[key]
    ]
    raise ConfigError(
        f"ckpt_path={ckpt_path} holds weights of another network: it was trained with "
        f"{', '.join(differing) or 'the same model options but other layer shapes'}; resume with its options"
    )
