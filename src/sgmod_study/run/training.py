"""One training run from a composed config: fit, test (the best checkpoint, or the last weights where
the task says so), summarise."""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import DictConfig, OmegaConf

from sgmod_study.config.schema import COMPILE_MODES, check_config
from sgmod_study.data import ImageDataModule, dataset_spec
from sgmod_study.errors import ConfigError, TrainingDiverged, check_bool, check_choice
from sgmod_study.run.cli import shown_path
from sgmod_study.run.console import quiet_libraries
from sgmod_study.run.diagnostics import (
    ActivationMonitor,
    FinalActivationRecord,
    GradNormMonitor,
    LearningRateLog,
    flatten_config,
    log_final_hparams,
    session_name,
)
from sgmod_study.run.interrupts import Interrupted, StopOnSignal
from sgmod_study.run.pruning import pruning_callback
from sgmod_study.run.resume import NOT_HYPERPARAMETERS, CommandLine, resumed_config
from sgmod_study.tasks.checkpoints import (
    AtomicCheckpointIO,
    ResumableCheckpoint,
    check_weights_fit,
    read_checkpoint,
    write_text_atomic,
)
from sgmod_study.tasks.registry import TASKS, registered
from sgmod_study.trial_contract import RESULT_FILE

LOGGERS = ("tensorboard", "csv")


def build_loggers(logger_cfg: Mapping, output_dir: Path) -> list[Logger]:
    name = logger_cfg["name"]
    check_choice("logger", name, LOGGERS)
    if name == "tensorboard":
        return [TensorBoardLogger(save_dir=output_dir, name="tensorboard", version="", default_hp_metric=False)]
    return [CSVLogger(save_dir=output_dir, name="csv", version="")]


def build_callbacks(cfg: Mapping, output_dir: Path) -> tuple[ModelCheckpoint | None, list[L.Callback]]:
    """The run's callbacks; the checkpoint callback (best and last.ckpt) is None where
    ``trainer.enable_checkpointing=false`` (debug=tiny): the run then tests its last weights."""
    checkpoint = None
    if cfg["trainer"].get("enable_checkpointing", True):
        checkpoint = ResumableCheckpoint(
            resumed_from=cfg["ckpt_path"],
            dirpath=output_dir / "checkpoints",
            monitor=cfg["checkpoint"]["monitor"],
            mode=cfg["checkpoint"]["mode"],
            filename="best-epoch{epoch:03d}",
            auto_insert_metric_name=False,
            save_last=True,
        )
    callbacks: list[L.Callback] = [c for c in (checkpoint, LearningRateLog(), FinalActivationRecord()) if c]
    every, steps = cfg["diagnostics"]["every_n_steps"], cfg["diagnostics"].get("steps")
    if every or steps:
        callbacks += [ActivationMonitor(every, steps), GradNormMonitor(every, steps)]
    pruning = pruning_callback(_first(cfg["optimized_metric"]))
    if pruning is not None:
        callbacks.append(pruning)
    return checkpoint, callbacks


def compile_mode(value: str | bool | None) -> str | None:
    """``speed.compile`` as a torch.compile mode: null or false is off, true is "default"."""
    if value is None or value is False:
        return None
    if value is True:
        return "default"
    if value not in COMPILE_MODES:
        raise ConfigError(
            f"speed.compile={value!r} is not a known choice; valid choices: null or false (off), "
            f"{', '.join(COMPILE_MODES)}"
        )
    return value


def apply_speed(module: L.LightningModule, task: Mapping, speed: Mapping) -> None:
    """``speed.channels_last`` and ``speed.compile`` on the networks the task's registry entry names, in place."""
    mode = compile_mode(speed["compile"])
    if mode is not None and task.get("loss") == "wgan_gp":
        raise ConfigError(
            f"speed.compile={speed['compile']} cannot be used with task.loss=wgan_gp: torch.compile does not "
            "support the double backward of the gradient penalty; leave speed.compile null"
        )
    check_bool("speed.channels_last", speed["channels_last"])
    for name in TASKS[task["name"]].networks:
        net = getattr(module, name)
        if speed["channels_last"]:
            net.to(memory_format=torch.channels_last)
        if mode is not None:
            # nn.Module.compile, not torch.compile(net): no wrapper, so the state_dict keys (checkpoints)
            # and the module names (per-layer monitors) stay what they are without compiling
            net.compile(mode=mode)


def train(cfg: DictConfig, command_line: CommandLine | None = None) -> float:
    """Train and test one configuration; return the value of ``cfg.optimized_metric``.

    The value and the final metrics are also written to ``<output_dir>/result.json``, where
    the sweeper reads a trial's outcome. With ``ckpt_path`` the run resumes with the checkpoint's
    configuration, changed only where ``command_line`` says (``sgmod_study.run.resume``; None, for a
    config composed in Python: every key of ``cfg`` counts as given). SIGTERM and SIGINT stop it
    after the current step with last.ckpt written (``sgmod_study.run.interrupts.Interrupted``).
    """
    quiet_libraries()
    # an interrupted run's last.ckpt is taken mid-epoch (sgmod_study.run.interrupts): its resume finishes
    # that epoch with batches of a new shuffle, which is all this warning of Lightning's says
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    command_line = command_line or CommandLine()
    c = OmegaConf.to_container(cfg, resolve=True)
    check_config(c)  # every key against the schema, before anything is built
    checkpoint = None
    if c["ckpt_path"] is not None:
        checkpoint = read_checkpoint(c["ckpt_path"])
        c = resumed_config(c, checkpoint, c["ckpt_path"], command_line.given)
        check_config(c)
        _record_resumed_config(c)
    with StopOnSignal() as stop:
        return _train(c, checkpoint, stop, command_line)


def _train(c: dict, checkpoint: dict | None, stop: StopOnSignal, command_line: CommandLine) -> float:
    output_dir = Path(c["output_dir"])
    trainer, checkpoint_callback = None, None
    try:
        L.seed_everything(c["seed"], workers=True)
        spec = dataset_spec(c["data"]["name"])
        datamodule = ImageDataModule(**c["data"], seed=c["seed"], channels_last=c["speed"]["channels_last"])
        module = registered(c["task"]["name"]).build(c, spec)
        apply_speed(module, c["task"], c["speed"])
        hparams = {k: v for k, v in flatten_config(c).items() if not k.startswith(NOT_HYPERPARAMETERS)}
        module.save_hyperparameters(hparams)  # into every checkpoint and the loggers' hparams.yaml
        if checkpoint is not None:
            check_weights_fit(checkpoint, c["ckpt_path"], hparams, module)
        checkpoint_callback, callbacks = build_callbacks(c, output_dir)
        trainer_options = {**c["trainer"], "strategy": _strategy(c["trainer"].get("strategy", "auto"), module)}
        trainer = L.Trainer(
            **trainer_options,
            logger=build_loggers(c["logger"], output_dir),
            callbacks=[*callbacks, stop],
            plugins=[AtomicCheckpointIO()],
            default_root_dir=output_dir,
        )
        return _fit_and_test(trainer, module, datamodule, checkpoint_callback, c, hparams, stop)
    except Interrupted as err:
        raise Interrupted(err.signum, _where_stopped(trainer, checkpoint_callback, command_line)) from None


def _record_resumed_config(c: dict) -> None:
    """Hydra wrote the run folder's .hydra/config.yaml from the defaults and the command line; a
    resumed run trains with its checkpoint's configuration, so that is what the folder records."""
    recorded = Path(c["output_dir"]) / ".hydra" / "config.yaml"
    if recorded.is_file():
        write_text_atomic(recorded, OmegaConf.to_yaml(OmegaConf.create(c)))


def _fit_and_test(trainer, module, datamodule, checkpoint: ModelCheckpoint | None, c: dict, hparams, stop) -> float:
    output_dir = Path(c["output_dir"])
    started = time.monotonic()
    try:
        stop.run(trainer.fit, module, datamodule=datamodule, ckpt_path=c["ckpt_path"])
    except TrainingDiverged as err:
        # a result too: what the run measured before it diverged stays in result.json
        if trainer.is_global_zero:
            _write_result(output_dir, module, datamodule, None, _final(module, trainer.callback_metrics), None, err)
        raise
    if not any(name.startswith("val/") for name in trainer.callback_metrics):
        # a resumed run that had trained all its epochs (stopped in its final test) trains nothing more
        stop.run(trainer.validate, module, datamodule=datamodule, verbose=False)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    # the task's choice (the best checkpoint, or the last weights); the last weights where there is
    # no checkpoint (trainer.enable_checkpointing=false, fast_dev_run)
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    tested = best_path if getattr(module, "TEST_CHECKPOINT", "best") == "best" else ""
    for results in stop.run(
        trainer.test, module, datamodule=datamodule, ckpt_path="best" if tested else None, verbose=False
    ):
        metrics.update(results)

    final = _final(module, metrics)
    log_final_hparams(trainer, hparams, final, session_name(output_dir))
    value = _optimized_value(c["optimized_metric"], metrics)
    if trainer.is_global_zero:
        print_summary(c, final, trainer.current_epoch, time.monotonic() - started, output_dir)
        _write_result(output_dir, module, datamodule, value, final, tested or None)
    return value


def _final(module: L.LightningModule, metrics: Mapping) -> dict[str, float]:
    return {name: float(metrics[name]) for name in module.FINAL_METRICS if name in metrics}


def _write_result(output_dir: Path, module, datamodule, value, final: dict, tested: str | None, diverged=None) -> None:
    """``<run>/result.json``, where the sweeper reads a trial's outcome (it may read it any time)."""
    result = {
        "value": value,
        "status": "diverged" if diverged else "complete",
        "metrics": final,
        "checkpoint": tested,  # the tested one; null: the last weights were tested
        "data_source": datamodule.source,
    }
    if diverged:
        result["reason"] = str(diverged)
    if getattr(module, "evaluations", None) is not None:  # every evaluation's values (the GAN)
        result["evaluations"] = module.evaluations
    write_text_atomic(output_dir / RESULT_FILE, json.dumps(result, indent=2))


def _where_stopped(trainer: L.Trainer | None, checkpoint: ModelCheckpoint | None, command_line: CommandLine) -> str:
    """Where an interrupted run stopped, and the command that resumes it."""
    last = Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}.ckpt" if checkpoint else None
    if trainer is None or last is None or not last.is_file():
        return " before it wrote a checkpoint: run the same command again"
    resume = command_line.resume_command(last, shown_path(Path(sys.argv[0])))
    return f" at epoch {trainer.current_epoch}, step {trainer.global_step}: last.ckpt written; resume with: {resume}"


def _strategy(strategy, module: L.LightningModule):
    # DDP must be told when a task's backward passes leave some parameters without gradients
    # (the GAN's discriminator step never reaches the generator), or it raises at the first step.
    if strategy == "ddp" and getattr(module, "DDP_FIND_UNUSED_PARAMETERS", False):
        return DDPStrategy(find_unused_parameters=True)
    return strategy


def _first(names: str | list[str]) -> str:
    return names[0] if isinstance(names, list) else names


def _optimized_value(names: str | list[str], metrics: Mapping[str, float]) -> float | list[float]:
    """The optimized metric's value, or a list of values for a multi-objective sweep."""
    for name in names if isinstance(names, list) else [names]:
        if name not in metrics:
            raise ConfigError(f"optimized_metric={name} was not logged; logged metrics: {', '.join(sorted(metrics))}")
    return [metrics[n] for n in names] if isinstance(names, list) else metrics[names]


def print_summary(c: Mapping, final: Mapping[str, float], epochs: int, seconds: float, output_dir: Path) -> None:
    opt = c["optimizer"]
    if "generator" in c["model"]:  # a GAN: each network has its own activation, norm and learning rate
        networks, lr = _gan_networks(c)
    else:
        networks, lr = f"{c['activation']['name']} | {c['model']['name']} | {_norm(c['norm'])}", f"lr={opt['lr']:g}"
    setup = (
        f"{c['task']['name']} | {networks} | {opt['name']} {lr} wd={opt['weight_decay']:g} | "
        f"data={c['data']['name']} seed={c['seed']}"
    )
    results = "  ".join(f"{name}={value:.4f}" for name, value in final.items())
    print(f"\n== {setup}\n== {results}  epochs={epochs}  time={seconds / 60:.1f} min\n== outputs: {output_dir}\n")


def _gan_networks(c: Mapping) -> tuple[str, str]:
    """``dcgan | G: relu, norm=batch (before act) | D: leaky_relu, norm=layer (before act)`` and the lr(s)."""
    model, task, lr = c["model"], c["task"], c["optimizer"]["lr"]
    g, d = model["generator"], model["discriminator"]
    spectral = ", spectral norm" if d.get("spectral_norm") else ""
    networks = (
        f"{model['name']} | G: {g['activation']['name']}, {_norm(g['norm'])} | "
        f"D: {d['activation']['name']}, {_norm(d['norm'])}{spectral}"
    )
    lr_g, lr_d = task.get("lr_g") or lr, task.get("lr_d") or lr
    return networks, f"lr={lr_g:g}" if lr_g == lr_d else f"lr G={lr_g:g} D={lr_d:g}"


def _norm(norm: Mapping) -> str:
    """``norm=batch (before act)``, ``norm=none``."""
    return "norm=none" if norm["name"] == "none" else f"norm={norm['name']} ({norm.get('placement', 'before')} act)"
