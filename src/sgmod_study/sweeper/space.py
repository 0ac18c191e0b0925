"""The search space: Hydra's sweep grammar read the way hydra-optuna-sweeper reads it.

Its documentation and tests are the reference (tests/test_sweeper_grammar.py has their table):

- ``choice(a, b, ...)`` (also ``a,b``, ``shuffle(...)``, ``sort(...)``): CategoricalDistribution
  of the values as written (Hydra's ``Transformer.encode``: a list or dict becomes its string);
- ``range(start, stop[, step])``: IntDistribution(start, stop, step), stop *included* as Optuna's
  high (unlike Hydra's basic sweeper); FloatDistribution when start, stop or step is a float;
  ``shuffle(range(...))``: CategoricalDistribution of Hydra's range values (stop excluded);
- ``interval(low, high)``: FloatDistribution; ``int(interval(low, high))``: IntDistribution;
  ``tag(log, ...)`` around either: log scale.

Forms it reads as something a user would not expect are refused here with one line instead:
``tag(int, interval(...))`` (it samples floats), tags other than ``log`` (ignored there), a tag
on a choice or range, a range with step <= 0 (there a continuous float for float bounds).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import OverrideParseException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from sgmod_study.errors import ConfigError

GRAMMAR = (
    "allowed: choice(a, b, ...), range(start, stop[, step]), shuffle(range(...)), interval(low, high), "
    "int(interval(low, high)), tag(log, interval(low, high)), tag(log, int(interval(low, high)))"
)


def distribution(override: Override) -> BaseDistribution:
    """Optuna distribution of one sweep override; a value Optuna would refuse, or a form this
    sweeper does not read as hydra-optuna-sweeper does, is refused in one line naming it."""
    sweep = override.value()
    line = override.input_line
    if isinstance(sweep, IntervalSweep):
        return _interval(line, sweep)
    if isinstance(sweep, ChoiceSweep | RangeSweep) and sweep.tags:
        raise ConfigError(
            f"{line} is not supported: a tag applies to an interval only, as in tag(log, interval(low, high)) "
            "(Optuna has no log choice or range)"
        )
    if isinstance(sweep, ChoiceSweep):
        return CategoricalDistribution([Transformer.encode(v) for v in sweep.list])  # as written, even if shuffled
    if isinstance(sweep, RangeSweep):
        return _range(line, sweep)
    raise ConfigError(f"{line} is not a sweep this sweeper supports; {GRAMMAR}")


def _interval(line: str, sweep: IntervalSweep) -> BaseDistribution:
    if "int" in sweep.tags:
        raise ConfigError(
            f"{line} is not supported: hydra-optuna-sweeper reads tag(int, ...) as a float interval; "
            "for integers write int(interval(low, high)) (log scale: tag(log, int(interval(low, high))))"
        )
    if sweep.tags - {"log"}:
        raise ConfigError(
            f"{line} is not supported: tag({', '.join(sorted(sweep.tags - {'log'}))}) means nothing to Optuna; "
            "allowed tags: log, as in tag(log, interval(low, high))"
        )
    log = "log" in sweep.tags
    as_int = isinstance(sweep.start, int) and isinstance(sweep.end, int)  # int(interval(...)) casts both
    low, high = (sweep.start, sweep.end) if as_int else (float(sweep.start), float(sweep.end))
    if low > high:
        raise ConfigError(
            f"{line} is not allowed: low {low} > high {high}; allowed: interval(low, high) with low <= high"
        )
    if log and low <= 0:
        raise ConfigError(
            f"{line} is not allowed: a log interval needs low > 0 (low {low}); "
            "allowed: tag(log, interval(low, high)) with 0 < low <= high"
        )
    return IntDistribution(low, high, log=log) if as_int else FloatDistribution(low, high, log=log)


def _range(line: str, sweep: RangeSweep) -> BaseDistribution:
    start, stop, step = sweep.start, sweep.stop, sweep.step
    if not step > 0 or start > stop:
        raise ConfigError(
            f"{line} is not allowed: start {start}, stop {stop}, step {step}; allowed: range(start, stop[, step]) "
            "with start <= stop and step > 0 (stop included, as hydra-optuna-sweeper reads it)"
        )
    if sweep.shuffle:
        values = [Transformer.encode(v) for v in sweep.range()]
        if not values:
            raise ConfigError(f"{line} is not allowed: it gives no value (Hydra's range excludes stop)")
        return CategoricalDistribution(values)
    if any(isinstance(v, float) for v in (start, stop, step)):
        with warnings.catch_warnings():  # Optuna moves a high that is no whole number of steps away, and says so
            warnings.simplefilter("ignore")
            return FloatDistribution(float(start), float(stop), step=float(step))
    return IntDistribution(start, start + (stop - start) // step * step, step=step)


def search_space(params: Mapping[str, str], arguments: Sequence[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Distributions of the sweep overrides in ``params`` and the command line; the fixed rest."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    space, fixed = {}, []
    for override in _parse(lines):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


def _parse(lines: Sequence[str]) -> list[Override]:
    parser = OverridesParser.create()
    overrides = []
    for line in lines:  # one at a time, so that an error names its line
        try:
            overrides.extend(parser.parse_overrides([line]))
        except OverrideParseException as err:
            reasons = [r for r in str(err).splitlines()[1:] if not r.startswith("See https")]
            detail = reasons[0].split(": ", 1)[-1] if reasons else "not Hydra's override grammar"
            raise ConfigError(
                f"{line} cannot be parsed ({detail}); allowed: key=value, choice(a, b, ...) with at least one value, "
                "range(start, stop, step), interval(low, high), int(interval(low, high)), tag(log, interval(low, high))"
            ) from None
    return overrides


def probe_overrides(space: Mapping[str, BaseDistribution], fixed: Sequence[str]) -> list[tuple[list[str], list[str]]]:
    """Override lists of trial configs that together give every searched parameter its bounds and
    each of its choices: first all at their first value, then one parameter changed at a time.
    Each comes with the searched overrides that make it new, to name in an error."""
    values = {key: _probe_values(d) for key, d in space.items()}
    first = [f"{key}={vs[0]}" for key, vs in values.items()]
    probes = [([*fixed, *first], first)]
    for i, (key, vs) in enumerate(values.items()):
        for v in vs[1:]:
            changed = f"{key}={v}"
            probes.append(([*fixed, *first[:i], changed, *first[i + 1 :]], [changed]))
    return probes


def _probe_values(d: BaseDistribution) -> list:
    if isinstance(d, CategoricalDistribution):
        return list(d.choices)
    return [d.low] if d.low == d.high else [d.low, d.high]


def custom_overrides(function: Callable, config, trial: optuna.Trial, space: Mapping[str, BaseDistribution]) -> dict:
    """The overrides a ``custom_search_space`` function adds: the dict it returns, or, in
    hydra-optuna-sweeper's style (it returns None), the parameters it suggested on the trial."""
    extra = function(config, trial)
    if extra is None:
        return {k: v for k, v in trial.params.items() if k not in space}
    return dict(extra)


def sgmod_lr_mult_space(cfg, trial: optuna.Trial) -> dict:
    """A ``custom_search_space`` example: tune gamma/beta's learning-rate multiplier, but only
    when the activation is Sgmod (conditional spaces do not fit Hydra's override grammar)."""
    if cfg.activation.name != "sgmod":
        return {}
    return {"activation.lr_mult": trial.suggest_float("activation.lr_mult", 0.1, 10.0, log=True)}
