"""The task registry is the one table of tasks: each entry builds, names its real networks, and is
what the schema, training and evaluation read (a task added to it needs no other table)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from helpers.runs import TINY, compose_config
from sgmod_study.config import schema
from sgmod_study.config.rules import integer
from sgmod_study.data import dataset_spec
from sgmod_study.errors import ConfigError
from sgmod_study.run import training
from sgmod_study.tasks.checkpoints import rebuild_task
from sgmod_study.tasks.registry import TASKS, Task, registered

# small networks: building is all these tests do
SMALL = {"classifier": ["model=mlp", "model.width=8", "model.depth=1"], "gan": ["model.width=8", "model.latent_dim=8"]}


def resolved(overrides: list[str], tmp_path) -> dict:
    return OmegaConf.to_container(compose_config([*TINY, *overrides], tmp_path), resolve=True)


def task_config(name: str, tmp_path) -> dict:
    """The composed config of ``task=<name>`` (its conf/task/<name>.yaml), on digits."""
    return resolved([f"task={name}", *SMALL.get(name, [])], tmp_path)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_registered_task_builds_and_has_the_networks_it_names(name, tmp_path):
    task = TASKS[name]
    c = task_config(name, tmp_path)
    schema.check_config(c)  # its own config file passes the schema: its model and metrics are registered
    module = task.build(c, dataset_spec(c["data"]["name"]))
    assert isinstance(module, L.LightningModule)
    assert task.name == name
    for attribute in task.networks:
        network = getattr(module, attribute)
        assert isinstance(network, nn.Module) and any(p.requires_grad for p in network.parameters())
    trained = {n.split(".")[0] for n, p in module.named_parameters() if p.requires_grad}
    assert trained <= set(task.networks), "a trained network the speed options would miss"
    assert set(module.FINAL_METRICS) <= set(task.logged()), "a final metric the schema would refuse to optimize"


def test_the_registry_imports_no_torch():
    code = (
        "import sys, sgmod_study.tasks.registry; print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_models_text_lists_the_models_unless_the_entry_words_it():
    assert Task("t", "m:f", ("a", "b", "c"), (), ()).models_text == "model=a, b or c"
    assert Task("t", "m:f", ("a",), (), ()).models_text == "model=a"
    assert TASKS["gan"].models_text == "model=dcgan or model=dcgan_baseline"  # a config file of the same model


# -- a task added to TASKS is known everywhere, with no other table edited


class FakeModule(L.LightningModule):
    FINAL_METRICS = ("test/score",)

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(2, 2)


FAKE = Task(
    name="fake",
    builder=lambda c, spec: FakeModule(),
    models=("cnn",),
    metrics=("train/score", "val/score", "test/score"),
    networks=("net",),
    settings={"depth": integer(1)},
)


@pytest.fixture
def fake_config(tmp_path, monkeypatch) -> dict:
    c = resolved([], tmp_path)  # model=cnn
    monkeypatch.setitem(TASKS, "fake", FAKE)
    c.update(task={"name": "fake", "depth": 2}, optimized_metric="val/score")
    c["checkpoint"]["monitor"] = "val/score"
    return c


def test_the_schema_accepts_a_task_added_to_the_registry(fake_config):
    schema.check_config(fake_config)
    schema.check_config({**fake_config, "optimized_metric": ["val/score", "test/score"]})


@pytest.mark.parametrize(
    "change, error",
    [
        ({"task": {"name": "fake", "depth": 0}}, "task.depth=0 is not allowed: it must be an integer >= 1"),
        ({"task": {"name": "fake"}}, "task.depth is missing: it must be an integer >= 1"),
        (
            {"task": {"name": "fake", "depth": 2, "loss": "bce"}},
            "task.loss='bce' is not a setting of task=fake; its settings: depth, name",
        ),
        (
            {"model": {"name": "mlp", "depth": 1, "width": 8, "dropout": 0.0}},
            "task=fake needs model=cnn, got model=mlp",
        ),
        (
            {"optimized_metric": "val/acc_best"},
            "optimized_metric='val/acc_best' is not a metric task=fake logs; its metrics: train/score, val/score, "
            "test/score",
        ),
        (
            {"checkpoint": {"monitor": "test/score", "mode": "max"}},
            "checkpoint.monitor='test/score' is not a metric task=fake logs while training; "
            "its metrics: train/score, val/score",
        ),
    ],
)
def test_the_schema_checks_an_added_task_by_its_registry_entry(fake_config, change, error):
    with pytest.raises(ConfigError) as err:
        schema.check_config({**fake_config, **change})
    assert str(err.value) == error


def test_an_unregistered_task_is_refused_by_the_schema_and_by_training(tmp_path):
    c = resolved([], tmp_path)
    c["task"] = {"name": "fake", "depth": 2}
    with pytest.raises(ConfigError, match=r"^task.name='fake' is not a known choice; valid choices: classifier, gan$"):
        schema.check_config(c)
    with pytest.raises(ConfigError, match=r"^task='fake' is not a known choice; valid choices: classifier, gan$"):
        registered("fake")


def test_training_and_evaluation_build_an_added_task_from_the_registry(fake_config):
    spec = dataset_spec("digits")
    module = registered("fake").build(fake_config, spec)
    training.apply_speed(module, fake_config["task"], {"compile": None, "channels_last": True})  # its networks
    checkpoint = {
        "hyper_parameters": {"task.name": "fake", "data.name": "digits"},
        "state_dict": {k: torch.full_like(v, 0.5) for k, v in module.state_dict().items()},
    }
    rebuilt = rebuild_task(checkpoint, "fake.ckpt")  # evaluation's call: every registered task
    assert isinstance(rebuilt, FakeModule)
    assert torch.equal(rebuilt.net.weight, torch.full((2, 2), 0.5))
    checkpoint["hyper_parameters"]["task.name"] = "other"
    with pytest.raises(ConfigError, match=r"task=other, not of task=classifier or gan or fake$"):
        rebuild_task(checkpoint, "fake.ckpt")


def test_the_schema_reads_each_real_task_from_the_registry(tmp_path, monkeypatch):
    for name, task in list(TASKS.items()):
        c = task_config(name, tmp_path)
        renamed = f"val/{name}_new"
        monkeypatch.setitem(TASKS, name, dataclasses.replace(task, metrics=(*task.logged(), renamed)))
        schema.check_config({**c, "optimized_metric": renamed})
        monkeypatch.setitem(TASKS, name, dataclasses.replace(task, models=("other",), models_text="model=other"))
        with pytest.raises(ConfigError, match=rf"^task={name} needs model=other, got model="):
            schema.check_config(c)


# -- COMPILE_MODES: one tuple, the schema's, which training uses


def test_compile_modes_are_one_object_that_the_schema_and_training_both_accept(tmp_path):
    assert training.COMPILE_MODES is schema.COMPILE_MODES
    c = resolved([], tmp_path)
    for mode in schema.COMPILE_MODES:
        schema.check_config({**c, "speed": {**c["speed"], "compile": mode}})
        assert training.compile_mode(mode) == mode
    with pytest.raises(ConfigError) as by_schema:
        schema.check_config({**c, "speed": {**c["speed"], "compile": "fast"}})
    with pytest.raises(ConfigError) as by_training:
        training.compile_mode("fast")
    assert str(by_schema.value) == str(by_training.value)
