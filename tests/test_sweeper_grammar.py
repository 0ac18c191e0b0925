"""The sweep grammar as hydra-optuna-sweeper reads it (facebookresearch/hydra, plugins/hydra_optuna_sweeper).

REFERENCE is the table of its tests (test_create_optuna_distribution_from_override) and every form its
documentation (website/docs/plugins/optuna_sweeper.md) shows, with the distribution that plugin
gives; this sweeper must give the same one. REFUSED are forms it would read as something a user
does not expect; here they are one line each.
"""

import warnings

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sgmod_study.errors import ConfigError
from sgmod_study.sweeper.space import custom_overrides, distribution, search_space


def parse(line: str):
    return OverridesParser.create().parse_overrides([line])[0]


def optuna_distribution(cls, *args, **kwargs):
    with warnings.catch_warnings():  # Optuna moves a high that is no whole number of steps away, and warns
        warnings.simplefilter("ignore")
        return cls(*args, **kwargs)


REFERENCE = [
    # its tests
    ("key=choice(1,2)", CategoricalDistribution([1, 2])),
    ("key=choice(true, false)", CategoricalDistribution([True, False])),
    ("key=choice('hello', 'world')", CategoricalDistribution(["hello", "world"])),
    ("key=shuffle(range(1,3))", CategoricalDistribution((1, 2))),
    ("key=range(1,3)", IntDistribution(1, 3)),
    ("key=interval(1, 5)", FloatDistribution(1, 5)),
    ("key=int(interval(1, 5))", IntDistribution(1, 5)),
    ("key=tag(log, interval(1, 5))", FloatDistribution(1, 5, log=True)),
    ("key=tag(log, int(interval(1, 5)))", IntDistribution(1, 5, log=True)),
    ("key=range(0.5, 5.5, step=1)", FloatDistribution(0.5, 5.5, step=1)),
    # its documentation
    ("x=range(-5.5,5.5,step=0.5)", FloatDistribution(-5.5, 5.5, step=0.5)),
    ("y=choice(-5,0,5)", CategoricalDistribution([-5, 0, 5])),
    ("x=interval(-5.0, 5.0)", FloatDistribution(-5.0, 5.0)),
    ("y=interval(0, 10)", FloatDistribution(0, 10)),
    ("x=int(interval(-5.0, 5.0))", IntDistribution(-5, 5)),
    ("y=tag(log, interval(1, 10))", FloatDistribution(1, 10, log=True)),
    ("x=range(-5.0, 5.0)", FloatDistribution(-5.0, 5.0, step=1.0)),
    ("y=shuffle(range(-5, 5))", CategoricalDistribution(list(range(-5, 5)))),
    ("x=choice(-5.0, 0.0, 5.0)", CategoricalDistribution([-5.0, 0.0, 5.0])),
    ("y=choice(0, 1, 2, 3, 4, 5)", CategoricalDistribution([0, 1, 2, 3, 4, 5])),
    ("x=range(0, 5, step=0.5)", FloatDistribution(0, 5, step=0.5)),
    ("y=range(0, 3, step=0.5)", FloatDistribution(0, 3, step=0.5)),
    ("x=range(1,4)", IntDistribution(1, 4)),
    ("x=range(-5.5, 5.5, 0.5)", FloatDistribution(-5.5, 5.5, step=0.5)),
    # what its code does with the rest of Hydra's grammar
    ("x=a,b", CategoricalDistribution(["a", "b"])),
    ("x=choice([8,16],[8,16,32])", CategoricalDistribution(["[8,16]", "[8,16,32]"])),  # Transformer.encode
    ("x=range(0, 10, 3)", optuna_distribution(IntDistribution, 0, 10, step=3)),  # Optuna: high 9
    ("x=range(0.0, 1.0, 0.3)", optuna_distribution(FloatDistribution, 0.0, 1.0, step=0.3)),  # high 0.9
    ("x=range(3, 3)", IntDistribution(3, 3)),
    ("x=tag(log, interval(1e-4, 1e-2))", FloatDistribution(1e-4, 1e-2, log=True)),
]


@pytest.mark.parametrize(("line", "expected"), REFERENCE)
def test_every_form_hydra_optuna_sweeper_documents_gives_its_distribution(line, expected):
    actual = distribution(parse(line))
    assert type(actual) is type(expected)
    if isinstance(expected, CategoricalDistribution):
        assert list(actual.choices) == list(expected.choices)  # written order, also under shuffle
    else:
        assert actual == expected


def test_a_shuffled_choice_keeps_its_written_order():
    """The plugin's order would be random (Hydra shuffles the iterator): a resumed study would
    meet another CategoricalDistribution and Optuna refuses that; the set is the same."""
    assert distribution(parse("x=shuffle(choice(3, 1, 2))")).choices == (3, 1, 2)


def test_fixed_and_delete_overrides_stay_fixed():
    # its test_create_params_from_overrides, in this sweeper's (space, fixed lines) form
    space, fixed = search_space({}, ["key1=choice(1,2)", "key2=5", "key3=range(1,3)", "~z", "~w=10"])
    assert space == {"key1": CategoricalDistribution([1, 2]), "key3": IntDistribution(1, 3)}
    assert fixed == ["key2=5", "~z", "~w=10"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "x=tag(int, interval(1, 5))",  # the plugin samples floats from it
            "x=tag(int, interval(1, 5)) is not supported: hydra-optuna-sweeper reads tag(int, ...) as a float "
            "interval; for integers write int(interval(low, high))",
        ),
        (
            "x=tag(grid, interval(1, 5))",  # the plugin ignores the tag
            "x=tag(grid, interval(1, 5)) is not supported: tag(grid) means nothing to Optuna; allowed tags: log",
        ),
        (
            "x=tag(log, range(1, 5))",  # the plugin drops log
            "x=tag(log, range(1, 5)) is not supported: a tag applies to an interval only",
        ),
        ("x=tag(log, choice(1, 10))", "x=tag(log, choice(1, 10)) is not supported: a tag applies to an interval only"),
        (
            "x=range(1.0, 5.0, 0)",  # the plugin: a continuous FloatDistribution
            "x=range(1.0, 5.0, 0) is not allowed: start 1.0, stop 5.0, step 0; allowed: range(start, stop[, step]) "
            "with start <= stop and step > 0",
        ),
        ("x=shuffle(range(3, 3))", "x=shuffle(range(3, 3)) is not allowed: it gives no value"),
        ("x=glob(*)", "x=glob(*) is not a sweep this sweeper supports"),
    ],
)
def test_forms_it_would_read_as_something_else_are_refused_in_one_line(line, message):
    with pytest.raises(ConfigError) as err:
        distribution(parse(line))
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_a_custom_search_space_returns_its_overrides_or_suggests_them_as_in_hydra_optuna_sweeper():
    space = {"x": FloatDistribution(0.0, 1.0)}
    trial = optuna.create_study().ask(space)

    def configure(cfg, trial) -> None:  # hydra-optuna-sweeper's style: suggest, return nothing
        trial.suggest_float("z", trial.params["x"], trial.params["x"] + 0.5)

    assert list(custom_overrides(configure, None, trial, space)) == ["z"]
    assert custom_overrides(lambda cfg, t: {"w": 1}, None, trial, space) == {"w": 1}
