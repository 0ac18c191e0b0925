"""A study as data: ``conf/study/<name>.yaml`` read into a ``Study`` (its fixed setup, its parts,
its pre-registered contrasts and its report's sections), and the study a user's own activation
gets from a study's ``bring_your_own`` entry. Reading a study imports neither torch nor Hydra."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from sgmod_study.errors import ConfigError, check_choice
from sgmod_study.paths import STUDY_CONF_DIR

KINDS = ("grid", "sweep", "confirm")
PICKS = ("best", "recommended", "best_cell", "trial")
DIRECTIONS = ("maximize", "minimize")
# the classifier's sections, then the GAN's
SECTIONS = (
    "controls",
    "travel",
    "sweeps",
    "importance",
    "confirm",
    "length",
    "stability",
    "trajectories",
    "equal_budget",
    "samples",
    "quality",
    "contrasts",
    # the depth and normalization studies'
    "trainability",
    "gradients",
    "gamma_by_layer",
    "cell_contrasts",
    "lr_choice",
    "confirm_table",
    # the classifier study's loose ends
    "line_search",
    "train_eval_gap",
)


@dataclass(frozen=True)
class Part:
    """One resumable Optuna sweep of the study, with a record of its own."""

    name: str
    kind: str  # grid (a design over named settings), sweep (a search) or confirm (a sweep's choice, fresh seeds)
    overrides: tuple[str, ...]
    trials: int  # finished trials that complete the part (its hydra.sweeper.n_trials)
    question: str = ""
    of: str | None = None  # confirm: the sweep (or grid) part whose chosen configuration it retrains
    # confirm: a sweep's "best" trial or its "recommended" default; a grid's "best_cell" (over its seeds)
    pick: str = "best"
    seeds: tuple[int, ...] = ()  # confirm: the fresh seeds
    # confirm of a grid: the best cell among the cells with these parameters ({activation: sgmod})
    where: tuple[tuple[str, object], ...] = ()
    trial: int | None = None  # confirm with pick "trial": that trial's configuration, as it was

    def changes(self) -> tuple[str, ...]:
        """The overrides of a confirm part that change a setting of its pick (a dotted key, such as
        activation.gamma_init=1.0, or one the sweeper searches), as opposed to where and how it runs
        (trainer=cpu, experiment=..., activation=sgmod: config groups)."""
        kept = ("experiment=", "task.val_batch_stats=")
        return tuple(o for o in self.overrides if "." in o.split("=", 1)[0] and not o.startswith(kept))

    @property
    def label(self) -> str:
        """How the report names a confirm part: its configuration (confirm_tanh_cpu -> tanh_cpu)."""
        return self.name.removeprefix("confirm_").removeprefix("sweep_")


@dataclass(frozen=True)
class Contrast:
    """Variant minus reference, named before the runs. A tuple is the best mean of its members,
    picked after the runs. Between parts, or (with ``part``) between two values of a grid's
    activation in that part, at each of the values ``at`` of the grid parameter ``by``
    (``model.depth``), listed before the runs: they fix how many tests Holm's correction counts."""

    variant: str | tuple[str, ...]
    reference: str | tuple[str, ...]
    question: str = ""
    primary: bool = True
    part: str | None = None
    by: str | None = None
    at: tuple = ()


@dataclass(frozen=True)
class Study:
    name: str
    question: str
    description: str
    report: str  # the report's path, relative to the repository (or to --record's folder)
    metric: str
    direction: str  # of every sweep's objective: maximize or minimize (which trial is best)
    setup: dict  # {key: value}: every part's runs share these
    parts: dict[str, Part]
    # {metric: its equivalence margin first, then the ones also reported}, for each of ``metrics``
    margins: dict[str, tuple[float, ...]]
    contrasts: dict[str, tuple[Contrast, ...]]  # {section: its contrasts}
    sections: dict[str, tuple[str, ...]]  # {section: the parts it reads}, in order
    bring_your_own: dict = field(default_factory=dict)
    scope: str = ""  # what the results hold for, and why (the report says it under its header)
    activation: str | None = None  # set on the study a user's own activation gets
    record: str = ""  # its record's folder name under study/ (a user's activation records into its study's)
    metrics: tuple[str, ...] = ()  # every metric the contrasts test (co-primary); by default (metric,)

    def __post_init__(self) -> None:
        if not self.record:
            object.__setattr__(self, "record", self.name)
        if not self.metrics:
            object.__setattr__(self, "metrics", (self.metric,))

    @property
    def margin(self) -> float:
        """The equivalence margin of ``metric``."""
        return self.margins[self.metric][0]

    @property
    def also_margins(self) -> tuple[float, ...]:
        return self.margins[self.metric][1:]

    def part(self, name: str) -> Part:
        check_choice("part", name, self.parts)
        return self.parts[name]

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def setup_overrides(self) -> list[str]:
        return [
            f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            for key, value in self.setup.items()
        ]


def names(conf_dir: Path = STUDY_CONF_DIR) -> list[str]:
    """The declared studies: one per ``conf/study/<name>.yaml``."""
    return sorted(p.stem for p in conf_dir.glob("*.yaml"))


def load_study(name: str, conf_dir: Path = STUDY_CONF_DIR) -> Study:
    """Study ``name`` from ``conf/study/<name>.yaml``; a bad entry is one line naming it."""
    check_choice("study", name, names(conf_dir))
    path = conf_dir / f"{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    return _study(name, data, path)


def _study(name: str, data: Mapping, path: Path) -> Study:
    _check_keys(
        path,
        "",
        data,
        (
            "question",
            "description",
            "scope",
            "report",
            "metric",
            "metrics",
            "direction",
            "setup",
            "parts",
            "equivalence",
            "contrasts",
            "sections",
            "bring_your_own",
        ),
        required=("parts", "sections"),
    )
    parts = {n: _part(path, n, p) for n, p in (data["parts"] or {}).items()}
    for p in parts.values():
        _check_of(path, p, parts)
    metric = str(data.get("metric", "test/acc"))
    metrics = _metrics(path, metric, data.get("metrics", [metric]))
    study = Study(
        name=name,
        question=str(data.get("question", "")),
        description=str(data.get("description", "")),
        scope=str(data.get("scope", "")),
        report=str(data.get("report", f"docs/report/{name}.md")),
        metric=metric,
        metrics=metrics,
        direction=_direction(path, data.get("direction", "maximize")),
        setup=dict(data.get("setup") or {}),
        parts=parts,
        margins=_margins(path, data.get("equivalence") or {}, metrics),
        contrasts={s: tuple(_contrast(path, s, c) for c in cs) for s, cs in (data.get("contrasts") or {}).items()},
        sections={},
        bring_your_own=dict(data.get("bring_your_own") or {}),
    )
    for contrasts in study.contrasts.values():
        for contrast in contrasts:
            if contrast.part is not None:
                check_choice(f"{path}: contrasts: part", contrast.part, parts)
    return replace(study, sections=_sections(path, data["sections"], study))


def _check_of(path: Path, part: Part, parts: Mapping[str, Part]) -> None:
    """A confirm retrains a sweep's best or recommended trial, or a grid's best cell."""
    if part.of is None:
        return
    if part.of not in parts or parts[part.of].kind not in ("sweep", "grid"):
        raise ConfigError(f"{path}: parts.{part.name}.of={part.of} is not allowed: choose a sweep or grid part")
    wanted = ("best_cell",) if parts[part.of].kind == "grid" else ("best", "recommended", "trial")
    if part.pick not in wanted:
        raise ConfigError(
            f"{path}: parts.{part.name}.pick={part.pick} is not allowed for the {parts[part.of].kind} "
            f"{part.of}: choose {' or '.join(wanted)}"
        )
    if part.where and part.pick != "best_cell":
        raise ConfigError(f"{path}: parts.{part.name}.where is only for pick: best_cell (a grid's cells)")


def _metrics(path: Path, metric: str, value) -> tuple[str, ...]:
    """The co-primary metrics: a list of names that holds ``metric``."""
    if not isinstance(value, list) or not value or metric not in value:
        raise ConfigError(
            f"{path}: metrics={value!r} is not allowed: it must be a list of metric names holding {metric}"
        )
    return tuple(str(m) for m in value)


def _margins(path: Path, data, metrics: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """``equivalence``: ``margin`` one number for every metric (default 0.005) or {metric: number}
    for each of ``metrics``; ``also`` (margins also reported) a list, or {metric: list}."""
    _check_keys(path, "equivalence.", data, ("margin", "also"))
    margin = _per_metric(path, "margin", data.get("margin", 0.005), metrics, required=True)
    also = _per_metric(path, "also", data.get("also", []), metrics, required=False)
    out = {}
    for metric in metrics:
        more = also.get(metric, [])
        more = [_positive(path, f"equivalence.also.{metric}", m) for m in (more if isinstance(more, list) else [more])]
        first = _positive(path, f"equivalence.margin.{metric}", margin[metric])
        out[metric] = (first, *dict.fromkeys(m for m in more if m != first))
    return out


def _per_metric(path: Path, key: str, value, metrics: Sequence[str], required: bool) -> dict:
    """``value`` for each metric: one value for all, or a mapping by metric name."""
    if not isinstance(value, Mapping):
        if key == "margin":
            _positive(path, "equivalence.margin", value)
        return dict.fromkeys(metrics, value)
    for name in value:
        if name not in metrics:
            raise ConfigError(
                f"{path}: equivalence.{key}.{name}={value[name]!r} is not allowed: {name} is not in metrics "
                f"(choose {', '.join(metrics)})"
            )
    missing = [name for name in metrics if name not in value]
    if required and missing:
        raise ConfigError(
            f"{path}: equivalence.{key}={dict(value)!r} is not allowed: it has no margin for {missing[0]} "
            f"(give one for each of {', '.join(metrics)})"
        )
    return dict(value)


def _positive(path: Path, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{path}: {key}={value!r} is not allowed: it must be a number > 0")
    return float(value)


def _direction(path: Path, value) -> str:
    check_choice(f"{path}: direction", value, DIRECTIONS)
    return value


def _check_keys(path: Path, where: str, data: Mapping, allowed: Sequence[str], required: Sequence[str] = ()) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: {where or 'the file'} must be a mapping")
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{path}: {where}{key} is not allowed: choose one of {', '.join(allowed)}")
    for key in required:
        if key not in data:
            raise ConfigError(f"{path}: {where}{key} is missing")


def _part(path: Path, name: str, data: Mapping) -> Part:
    where = f"parts.{name}."
    allowed = ("kind", "overrides", "trials", "question", "of", "pick", "seeds", "where", "trial")
    _check_keys(path, where, data, allowed, ("kind",))
    kind, pick = data["kind"], data.get("pick", "best")
    check_choice(f"{path}: {where}kind", kind, KINDS)
    check_choice(f"{path}: {where}pick", pick, PICKS)
    seeds = tuple(int(s) for s in data.get("seeds", ()))
    if kind == "confirm" and (not data.get("of") or not seeds):
        raise ConfigError(f"{path}: part {name} is a confirm: it needs `of` (its sweep part) and `seeds`")
    trials = int(data.get("trials", len(seeds)))
    if trials < 1:
        raise ConfigError(f"{path}: {where}trials={trials} is not allowed: it must be a whole number >= 1")
    return Part(
        name=name,
        kind=kind,
        overrides=tuple(str(o) for o in data.get("overrides", ())),
        trials=trials,
        question=str(data.get("question", "")),
        of=data.get("of"),
        pick=pick,
        seeds=seeds,
        where=_where(path, f"{where}where", data.get("where")),
        trial=_trial(path, f"{where}trial", data.get("trial"), pick),
    )


def _trial(path: Path, key: str, value, pick: str) -> int | None:
    if (value is None) != (pick != "trial"):
        raise ConfigError(f"{path}: {key}={value!r}: pick: trial needs the trial's number, and only it takes one")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ConfigError(f"{path}: {key}={value!r} is not allowed: it must be a trial number >= 0")
    return value


def _where(path: Path, key: str, value) -> tuple[tuple[str, object], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"{path}: {key}={value!r} is not allowed: it must map grid parameters to values")
    return tuple(sorted(value.items()))


def _names(value) -> str | tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else str(value)


def _contrast(path: Path, section: str, data: Mapping) -> Contrast:
    where = f"contrasts.{section}[]."
    allowed = ("variant", "reference", "question", "primary", "part", "by", "at")
    _check_keys(path, where, data, allowed, ("variant", "reference"))
    if data.get("by") and not data.get("at"):
        raise ConfigError(
            f"{path}: {where}by={data['by']} without at is not allowed: list the values it is tested at "
            "(at: [4, 8, 16, 32]), so that Holm's family is known before the runs"
        )
    return Contrast(
        _names(data["variant"]),
        _names(data["reference"]),
        str(data.get("question", "")),
        bool(data.get("primary", True)),
        data.get("part"),
        data.get("by"),
        tuple(data.get("at") or ()),
    )


def _sections(path: Path, data: Mapping, study: Study) -> dict[str, tuple[str, ...]]:
    _check_keys(path, "sections.", data, SECTIONS)
    sections = {}
    for section, parts in data.items():
        parts = (parts,) if isinstance(parts, str) else tuple(parts or ())
        for p in parts:
            check_choice(f"{path}: sections.{section}: part", p, study.parts)
        sections[section] = parts
    return sections


def with_activation(study: Study, activation: str, searched: Mapping[str, str]) -> Study:
    """The study a user's own ``activation`` gets from ``study.bring_your_own``: its sweep (the
    template's overrides, plus ``searched``: the activation's own parameters, Hydra sweeper
    grammar) and the confirmation of its best configuration, compared with the template's
    baselines (their sweep_<name> and confirm_<name> parts, from the study's record)."""
    template = study.bring_your_own
    if not template:
        raise ConfigError(f"study={study.name} declares no bring_your_own entry: it takes no --activation")
    baselines = [b for b in template.get("baselines", ()) if b != activation]
    sweep, confirm = f"sweep_{activation}", f"confirm_{activation}"
    extra = tuple(f"hydra.sweeper.params.{key}='{value}'" for key, value in searched.items())
    own = {
        sweep: Part(
            sweep,
            "sweep",
            (*template["sweep"]["overrides"], f"activation={activation}", *extra),
            int(template["sweep"]["trials"]),
            f"{activation} over the network's lr and wd" + (f" and {', '.join(searched)}" if searched else ""),
        ),
        confirm: Part(
            confirm,
            "confirm",
            (*template["confirm"]["overrides"], f"activation={activation}"),
            len(template["confirm"]["seeds"]),
            f"the best {activation} configuration on fresh seeds",
            of=sweep,
            seeds=tuple(template["confirm"]["seeds"]),
        ),
    }
    reused = {n: study.parts[n] for b in baselines for n in (f"sweep_{b}", f"confirm_{b}") if n in study.parts}
    sweeps = [sweep, *(n for n in reused if n.startswith("sweep_"))]
    confirms = [confirm, *(n for n in reused if n.startswith("confirm_"))]
    return replace(
        study,
        name=f"{study.name}_{activation}",
        question=f"{activation} tuned against the tuned baselines of study {study.name}",
        report=str(Path(study.report).with_name(f"{study.name}_{activation}.md")),
        parts={**own, **reused},
        contrasts={
            "sweeps": tuple(Contrast(sweep, n) for n in sweeps[1:]),
            "confirm": tuple(Contrast(confirm, n) for n in confirms[1:]),
        },
        sections={"sweeps": tuple(sweeps), "confirm": tuple(confirms)} | ({"importance": (sweep,)} if searched else {}),
        activation=activation,
    )
