"""Study records for the tests: finished parts in journals, runs.jsonl rows, and
``scripts/study.py`` run in-process as a user would run it."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import optuna
from optuna.distributions import FloatDistribution

from helpers.runs import CONF, ROOT
from sgmod_study.study import runner
from sgmod_study.study.record import Record
from sgmod_study.study.spec import load_study

CLASSIFIER = load_study("classifier", CONF / "study")
# the GAN study as declared, its margins pinned: the report tests' numbers do not follow edits of them
GAN = dataclasses.replace(load_study("gan", CONF / "study"), margins={"test/fid": (2.0,), "test/kid": (0.05,)})

# test accuracies of a fixed and a learnable Sgmod on 8 seeds: the learnable one better on every seed
FIXED = [0.910, 0.912, 0.915, 0.911, 0.913, 0.914, 0.916, 0.912]
LEARNED = [0.915, 0.916, 0.921, 0.914, 0.919, 0.918, 0.922, 0.917]


def record_dir(name: str, root: Path) -> Path:
    return root / "study" / "classifier" / name


def record_of(root: Path) -> Record:
    return Record(root / "study" / "classifier")


def fake_study(root, name, n, stored=None):
    """Part ``name`` with ``n`` finished trials whose run folders are here; ``stored``: the folders
    as their trials recorded them (by default their absolute paths)."""
    journal = record_dir(name, root) / "study.journal"
    journal.parent.mkdir(parents=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for i in range(n):
        trial = study.ask({"x": FloatDistribution(0, 1)})
        folder = root / "outputs" / "study" / "classifier" / name / f"trial_{i:04d}"
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "config.yaml").write_text(f"seed: {i}\nactivation:\n  name: sgmod\n")
        (folder / "result.json").write_text(json.dumps({"value": i / 10, "metrics": {"test/acc": i / 10}}))
        trial.set_user_attr("folder", stored[i] if stored else str(folder))
        study.tell(trial, i / 10)
    return study


def sweep_record(root, name, trials, space=None):
    """A finished sweep part: ``trials`` is [(params, value), ...]."""
    journal = record_dir(name, root) / "study.journal"
    journal.parent.mkdir(parents=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    space = space or {key: FloatDistribution(1e-5, 1.0, log=True) for key in trials[0][0]}
    rows = []
    for number, (params, value) in enumerate(trials):
        study.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=value))
        rows.append({"number": number, "state": "COMPLETE", "values": [value], "params": params, "config": {}})
    (journal.parent / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return study


def sgmod_sweep(root, values):
    """A finished sweep_sgmod record: trial i has gamma_init, beta_init and lr from ``values[i]``."""
    space = {
        "activation.gamma_init": FloatDistribution(0.1, 10.0, log=True),
        "activation.beta_init": FloatDistribution(-5.0, 5.0),
        "activation.lr": FloatDistribution(1e-4, 1e-2, log=True),
    }
    keys = list(space)
    return sweep_record(root, "sweep_sgmod", [(dict(zip(keys, v[:3], strict=True)), v[3]) for v in values], space)


def row(variant, seed, acc, gamma=None, could=1.0, learn=None):
    """A finished run of ``variant`` on a GPU; ``gamma``: its head layer's final gamma per channel
    (beta ends at -0.5). Learnable gamma/beta unless the variant is a fixed one."""
    learn = variant in ("sgmod", "sgmod_tanh_init") if learn is None else learn
    result = {
        "number": seed,
        "state": "COMPLETE",
        "values": [acc],
        "params": {"activation": variant, "seed": seed},
        "metrics": {"test/acc": acc},
        "config": {"activation": {"gamma_init": 1.0, "beta_init": 0.0, "learn_gamma": learn, "learn_beta": learn}},
        "machine": {"gpu": "Test GPU"},
    }
    if gamma is not None:
        layer = {"gamma": gamma, "beta": [-0.5] * len(gamma), "next_weight_norm": [2.0] * len(gamma)}
        result["sgmod"] = {"activation_lr_sum": could, "layers": {"head.act": layer}}
    return result


# -- GAN runs.jsonl rows (the contract of study/gan/<part>/runs.jsonl)

GAN_LAYERS = ("generator.body.block0.act", "discriminator.body.act1")


def gan_row(
    seed, fid, kid=0.02, *, lr=2e-4, number=None, collapsed=0, eval_shift=(1.0, 0.001), epochs=3, every=1, **extra
):
    """A finished GAN run: final test FID/KID ``fid``/``kid`` (train mode; eval mode ``eval_shift``
    worse), val/fid = fid + 1 falling by 5 per epoch before the last, evaluated every ``every``
    epochs, its best epoch the last one,
    and gamma/beta curves that end at gamma 1 + 100 lr, beta -10 lr. ``extra``: more row keys."""
    params = {"optimizer.lr": lr, "seed": seed} if seed < 100 else {"seed": seed}
    final = {"fid": fid, "kid": kid, "kid_se": kid / 10, "precision": 0.6, "recall": 0.5, "classes": 9.0}
    final |= {"class_entropy": 3.1, "collapsed": collapsed, "fid_best": fid, "kid_best": kid, "best_epoch": epochs}
    metrics = {f"test/{k}": v for k, v in final.items()} | {f"val/{k}": v for k, v in final.items()}
    metrics |= {"val/fid": fid + 1.0, "val/fid_best": fid + 1.0}
    metrics |= {"test_eval_mode/fid": fid + eval_shift[0], "test_eval_mode/kid": kid + eval_shift[1]}
    evaluations = [
        {"epoch": e, "step": 215 * e, "val/fid": fid + 1.0 + 5.0 * (epochs - e), "val/kid": kid + 0.01 * (epochs - e)}
        for e in range(every, epochs + 1, every)
    ]
    curves = {}
    for layer in GAN_LAYERS:
        curves[f"sgmod/{layer}/gamma"] = [[0, 1.0], [50, 1.0 + 50 * lr], [100, 1.0 + 100 * lr]]
        curves[f"sgmod/{layer}/beta"] = [[0, 0.0], [50, -5 * lr], [100, -10 * lr]]
    row = {
        "number": seed if number is None else number,
        "state": "COMPLETE",
        "values": [fid + 1.0],
        "params": params,
        "metrics": metrics,
        "status": "complete",
        "evaluations": evaluations,
        "curves": curves,
        "config": {"optimizer": {"lr": lr}, "task": {"name": "gan", "lr_g": None, "lr_d": None}, "seed": seed},
        "machine": {"gpu": "Test GPU"},
    }
    return row | extra


def diverged_row(seed, *, lr=2e-4, number=None):
    """A GAN run whose training diverged: no value, what it measured before (one evaluation)."""
    params = {"optimizer.lr": lr, "seed": seed} if seed < 100 else {"seed": seed}
    return {
        "number": seed if number is None else number,
        "state": "FAIL",
        "fail_reason": "training diverged: the generator's loss is nan",
        "values": None,
        "params": params,
        "metrics": {"val/fid": 300.0},
        "status": "diverged",
        "evaluations": [{"epoch": 1, "step": 215, "val/fid": 300.0, "val/kid": 0.5}],
        "config": {"optimizer": {"lr": lr}, "task": {"name": "gan", "lr_g": None, "lr_d": None}, "seed": seed},
        "machine": {"gpu": "Test GPU"},
    }


def write_parts(folder: Path, parts: dict) -> Record:
    """A record in ``folder`` holding each part's rows (runs.jsonl only: no journal)."""
    for part, rows in parts.items():
        (folder / part).mkdir(parents=True, exist_ok=True)
        (folder / part / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return Record(folder)


# -- scripts/study.py in-process


@cache
def study_script():
    """scripts/study.py as a module, loaded once (patch its names on this object)."""
    spec = importlib.util.spec_from_file_location("study_script", ROOT / "scripts" / "study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def study_cli(args, repo, monkeypatch, capsys) -> tuple[int, str, str]:
    """``python scripts/study.py <args>`` in the folder ``repo``, in-process: (exit code, stdout, stderr)."""
    if not (repo / "conf").exists():  # the studies' declarations, read from the working folder
        (repo / "conf").symlink_to(ROOT / "conf")
    monkeypatch.chdir(repo)
    monkeypatch.setattr(sys, "argv", ["study.py", *args])
    try:
        code = study_script().main()
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def no_sweep(monkeypatch):
    """Any sweep the study runner starts fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a sweep was started")

    monkeypatch.setattr(runner, "subprocess", SimpleNamespace(Popen=refuse, PIPE=-1, STDOUT=-2))
