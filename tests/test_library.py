"""Sgmod and the models as a library: public names, typing, timm, installs without the sweep extras."""

import inspect
import subprocess
import sys

import pytest
import torch

import sgmod_study
from helpers.runs import ROOT

SWEEP_ONLY = ("optuna-dashboard", "psycopg2-binary", "hydra-submitit-launcher")


def test_public_names_import_from_the_package_with_docstrings_and_type_hints():
    from sgmod_study import Classifier, Sgmod, build_activation, build_model  # noqa: F401

    for name in sgmod_study.__all__:
        obj = getattr(sgmod_study, name)
        if not callable(obj):
            continue
        assert inspect.getdoc(obj), f"{name} has no docstring"
        if inspect.isclass(obj) and issubclass(obj, Exception):
            continue  # its constructor is the built-in one
        function = obj.__init__ if inspect.isclass(obj) else obj
        signature = inspect.signature(function)
        missing = [p for p in signature.parameters.values() if p.name != "self" and p.annotation is p.empty]
        assert not missing, f"{name}: parameters without type hints: {missing}"
        assert signature.return_annotation is not signature.empty, f"{name} has no return type hint"


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_package_ships_py_typed():
    assert (ROOT / "src" / "sgmod_study" / "py.typed").is_file()
    package_data = _pyproject()["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["sgmod_study"]


def test_sweep_dependencies_are_an_extra_that_make_setup_installs():
    project = _pyproject()["project"]
    required = " ".join(project["dependencies"])
    assert not [name for name in SWEEP_ONLY if name in required]
    sweep = " ".join(project["optional-dependencies"]["sweep"])
    assert all(name in sweep for name in SWEEP_ONLY)
    assert "pip install --quiet -e '.[dev,sweep]'" in (ROOT / "Makefile").read_text()


# Run in a fresh interpreter that cannot import the sweep extras' modules.
WITHOUT_SWEEP_EXTRAS = """
import sys
for name in ("psycopg2", "optuna_dashboard", "submitit", "hydra_plugins.hydra_submitit_launcher",
             "hydra_plugins.hydra_submitit_launcher.config", "hydra_plugins.hydra_submitit_launcher.submitit_launcher"):
    sys.modules[name] = None  # import fails, and Hydra's plugin scan skips it

import torch
from sgmod_study import Sgmod, build_model
assert "lightning" not in sys.modules  # the library part does not pull in the training stack
net = build_model({"name": "mlp", "depth": 2, "width": 16}, {"name": "sgmod", "impl": "reference"},
                  {"name": "batch"}, 1, 8, 10)
torch.nn.functional.cross_entropy(net(torch.randn(4, 1, 8, 8)), torch.arange(4)).backward()

import pkgutil, importlib, sgmod_study
for module in pkgutil.walk_packages(sgmod_study.__path__, "sgmod_study."):
    importlib.import_module(module.name)

from pathlib import Path
from hydra import compose, initialize_config_dir
from sgmod_study.config.schema import hydra_error_line
from sgmod_study.errors import ConfigError
from sgmod_study.sweeper.storage import open_storage
with initialize_config_dir(config_dir=sys.argv[1], version_base="1.3"):
    try:
        compose("train", ["hparams_search=sgmod_classifier", "hydra/launcher=slurm"], return_hydra_config=True)
    except Exception as err:
        print(hydra_error_line(err))
try:
    open_storage("postgresql+psycopg2://user:pw@127.0.0.1:1/optuna", "study", Path("."))
except ConfigError as err:
    print(err)
"""


def test_everything_but_the_sweep_extras_works_without_them():
    """Which imports need the extras (grep: none at module level): a SLURM launcher and a PostgreSQL
    storage, each refused with one line that says how to install them."""
    completed = subprocess.run(
        [sys.executable, "-c", WITHOUT_SWEEP_EXTRAS, str(ROOT / "conf")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.splitlines()[-2:] == [
        "In 'hydra/launcher/slurm': Could not load 'hydra/launcher/submitit_slurm'. "
        "(hydra-submitit-launcher is not installed: pip install -e '.[sweep]')",
        "hydra.sweeper.storage=postgresql+psycopg2://user:***@127.0.0.1:1/optuna needs the database driver "
        "psycopg2, which is not installed: pip install -e '.[sweep]' (the sweep extra brings psycopg2 for PostgreSQL)",
    ]


def test_sgmod_as_timm_act_layer_builds_resnet18_and_trains_a_step():
    """timm builds every activation as act_layer(inplace=True), without a channel count: one scalar
    gamma/beta pair per layer, still kept within bounds by a plain optimizer."""
    timm = pytest.importorskip("timm")
    from sgmod_study import Sgmod

    model = timm.create_model("resnet18", act_layer=Sgmod, num_classes=10)
    layers = [m for m in model.modules() if isinstance(m, Sgmod)]
    assert len(layers) == 17 and all(m.gamma.shape == (1,) for m in layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=10.0)  # large enough to push some gamma past a bound
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    assert all(m.gamma.grad is not None for m in layers)
    optimizer.step()
    gammas = torch.cat([m.gamma.detach() for m in layers])
    assert torch.isfinite(loss) and gammas.min() >= 0.1 and gammas.max() <= 10.0
    assert not torch.equal(gammas, torch.ones_like(gammas))


def test_the_public_names_are_the_lazily_imported_ones():
    # every name in __all__ resolves, and none is imported before it is asked for (torch is not
    # imported by `import sgmod_study`: --help and completion import the package's small modules)
    assert sorted(sgmod_study.__all__) == sorted(sgmod_study._MODULE_OF)
    code = "import sys, sgmod_study; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
