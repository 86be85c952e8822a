"""What a sweep is, before Optuna sees it: the parameters to vary, parsed from text like
`learning_rate=1e-4:1e-1:log` or `hidden_sizes=64,128|256,128`, and the settings around
them, checked against the ranges `engine/config.py` declares, never restated here.

Nothing here imports Optuna (the command line checks a sweep before it loads anything);
`engine.sweep` runs the trials and re-exports these names.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from engine import ENGINES
from engine.config import TrainConfig, check_value, engine_problem, field_spec, value_text
from engine.limits import max_sweep_trials

# Fields a sweep fixes for every trial, with the reason a person reads when varying one.
FIXED_FIELDS = {
    "epochs": "epochs is set once for the whole sweep (--epochs), so trials compare",
    "train_size": "train_size is set once for the whole sweep (--train-size), so trials "
                  "compare",
    "validation_fraction": "validation_fraction decides which images every trial is scored "
                           "on; it stays the same for all of them",
    "seed": "seed decides which images every trial is scored on; it stays the same for all "
            "of them",
}
SWEEPABLE = tuple(spec.name for spec in dataclasses.fields(TrainConfig)
                  if spec.name not in FIXED_FIELDS)
SAMPLERS = ("auto", "grid", "tpe")
# The grid sampler is for a picture of one or two parameters; beyond that its size grows
# as the product of every parameter's points, and TPE spends the trials better.
GRID_MAX_PARAMS = 2
SYNTAX = "write NAME=LOW:HIGH (add :log for a log scale) or NAME=A|B|C"
# Above this many combinations of extreme values, each parameter is checked on its own.
MAX_COMBINATIONS_CHECKED = 2_000


@dataclass(frozen=True)
class SearchParam:
    """One parameter to vary: a range (low, high, log) or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    @property
    def kind(self) -> str:
        """"choice", "int" or "float"."""
        if self.choices:
            return "choice"
        return "int" if _is_integral(self.name) else "float"

    @property
    def text(self) -> str:
        """The --vary text that parses back to this parameter."""
        if self.choices:
            return f"{self.name}=" + "|".join(value_text(value) for value in self.choices)
        scale = ":log" if self.log else (":linear" if _declares_log(self.name) else "")
        return f"{self.name}={value_text(self.low)}:{value_text(self.high)}{scale}"

    def encode(self, value: Any) -> Any:
        """A value as Optuna stores it: layer lists become text ("64,128"), since Optuna's
        categorical values must be plain numbers or strings."""
        return ",".join(map(str, value)) if isinstance(value, tuple) else value

    def decode(self, stored: Any) -> Any:
        return config_values({self.name: stored})[self.name]

    def grid_values(self, points: int) -> list[Any]:
        """Every choice, or `points` values across the range (log-spaced on a log scale),
        rounded to four significant figures so a grid reads well."""
        if self.choices:
            return list(self.choices)
        spaced = (np.geomspace if self.log else np.linspace)(self.low, self.high, points)
        if self.kind == "int":
            return sorted({int(value) for value in np.rint(spaced)})
        # Clipped: rounding an end point may step outside the range Optuna checks.
        return [min(max(float(f"{value:.4g}"), self.low), self.high) for value in spaced]

    def suggest(self, trial: Any) -> Any:
        """This parameter's value for an Optuna trial, as a config holds it."""
        if self.choices:
            stored = trial.suggest_categorical(self.name, [self.encode(value)
                                                           for value in self.choices])
            return self.decode(stored)
        suggest = trial.suggest_int if self.kind == "int" else trial.suggest_float
        return suggest(self.name, self.low, self.high, log=self.log)

    def extremes(self) -> list[Any]:
        """The values a config must accept for every trial to be buildable."""
        return list(self.choices) if self.choices else [self.low, self.high]


class Problem(NamedTuple):
    """A reason a sweep cannot start: `about` is "params", "trials", "sampler", "engine",
    "base" or a parameter's name, so a page can show it under the right widget."""

    about: str
    message: str


@dataclass(frozen=True)
class SweepSpec:
    """Everything a study needs to run its trials the same way in every worker."""

    engine: str
    params: tuple[SearchParam, ...]
    trials: int
    base: TrainConfig = field(default_factory=TrainConfig)   # epochs, train_size, seed, ...
    sampler: str = "auto"            # auto: grid for up to two parameters, TPE otherwise
    pruning: bool = True             # median pruner on each epoch's validation accuracy

    @property
    def resolved_sampler(self) -> str:
        if self.sampler != "auto":
            return self.sampler
        return "grid" if len(self.params) <= GRID_MAX_PARAMS else "tpe"

    def problems(self) -> list[Problem]:
        """Why this sweep cannot run, each in one line; empty when it can."""
        found: list[Problem] = []
        limit = max_sweep_trials()
        if self.engine not in ENGINES:
            found.append(Problem("engine", f"engine must be one of {', '.join(ENGINES)}, "
                                           f"got {self.engine!r}"))
        if not self.params:
            found.append(Problem("params", "vary at least one parameter"))
        names = [param.name for param in self.params]
        for name in sorted({name for name in names if names.count(name) > 1}):
            found.append(Problem(name, f"{name} is varied twice; give it once"))
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) \
                or not 1 <= self.trials <= limit:
            found.append(Problem("trials", f"trials must be a whole number from 1 to "
                                           f"{limit} (this host's limit), got {self.trials}"))
        if self.sampler not in SAMPLERS:
            found.append(Problem("sampler", f"sampler must be one of {', '.join(SAMPLERS)}, "
                                            f"got {self.sampler!r}"))
        elif self.resolved_sampler == "grid" and not found:
            found += self._grid_problems()
        if int(self.base.train_size * self.base.validation_fraction) == 0:
            found.append(Problem("base", "a sweep scores each trial on validation images; set "
                                         "validation_fraction above 0"))
        if not found:
            found += self._combination_problems()
        return found

    def config_for(self, values: dict[str, Any]) -> TrainConfig:
        """The trial's config: the base with the varied values (as configs hold them)."""
        return self.base.replace(**values)

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's points, as Optuna stores them. Ranges get as many points as
        fill the trials asked for alongside the choices, at least two each."""
        ranges = [param for param in self.params if not param.choices]
        choice_count = math.prod(len(param.choices) for param in self.params if param.choices)
        points = max(2, int((self.trials / choice_count) ** (1 / len(ranges)) + 1e-9)) \
            if ranges else 0
        return {param.name: [param.encode(value) for value in param.grid_values(points)]
                for param in self.params}

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "vary": [param.text for param in self.params],
                "trials": self.trials, "sampler": self.sampler, "pruning": self.pruning,
                "base": self.base.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        return cls(engine=data["engine"], params=tuple(parse_vary(text) for text in data["vary"]),
                   trials=int(data["trials"]), base=TrainConfig.from_dict(data["base"]),
                   sampler=data["sampler"], pruning=bool(data["pruning"]))

    def _grid_problems(self) -> list[Problem]:
        size = math.prod(len(values) for values in self.grid().values())
        if self.trials > size:
            return [Problem("trials", f"the grid has {size} points, fewer than the "
                                      f"{self.trials} trials asked for; ask for at most {size} "
                                      "or use the TPE sampler")]
        return []

    def _combination_problems(self) -> list[Problem]:
        """Each combination of the parameters' extreme values must make a valid config the
        engine builds (a batch larger than the training images, dropout without a hidden
        layer, a CNN on the NumPy engine...)."""
        if math.prod(len(param.extremes()) for param in self.params) <= MAX_COMBINATIONS_CHECKED:
            combinations = [dict(zip([param.name for param in self.params], values))
                            for values in itertools.product(
                                *(param.extremes() for param in self.params))]
        else:
            combinations = [{param.name: value} for param in self.params
                            for value in param.extremes()]
        problems = []
        for values in combinations:
            shown = " ".join(f"{name}={value_text(value)}" for name, value in values.items())
            try:
                config = self.config_for(values)
            except ValueError as error:
                problems.append(Problem("params", f"with {shown}: {error}"))
                break
            problem = engine_problem(self.engine, config)
            if problem:
                problems.append(Problem("params", f"with {shown}: {problem}"))
                break
        return problems


def parse_vary(text: str) -> SearchParam:
    """A parameter from `NAME=LOW:HIGH[:log|:linear]` (numeric fields; the scale defaults
    to the one the field declares) or `NAME=A|B|C` (any field); ValueError in one line."""
    name, equals, values = (part.strip() for part in str(text).partition("="))
    if not equals or not name or not values:
        raise ValueError(f"{SYNTAX}, got {text!r}")
    if name not in SWEEPABLE:
        if name in FIXED_FIELDS:
            raise ValueError(FIXED_FIELDS[name])
        raise ValueError(f"unknown parameter {name!r}; a sweep can vary "
                         f"{', '.join(SWEEPABLE)}")
    if "|" in values:
        return SearchParam(name, choices=_parse_choices(name, values))
    meta = field_spec(name).metadata
    if "range" not in meta or "max_layers" in meta:
        raise ValueError(f"{name} takes a list of values, not a range: write "
                         f"{name}=A|B|C")
    return _parse_range(name, values, meta)


def config_values(stored: dict[str, Any]) -> dict[str, Any]:
    """Parameters as Optuna stores them -> as a config holds them (layer lists as tuples)."""
    return {name: check_value(name, value) if _is_layer_list(name) else value
            for name, value in stored.items()}


def _parse_choices(name: str, text: str) -> tuple[Any, ...]:
    items = [item.strip() for item in text.split("|")]
    if "" in items:
        raise ValueError(f"{name} has an empty value in {text!r}; separate values with "
                         "single |")
    choices = []
    for item in items:
        value = check_value(name, _typed(name, item))
        if value in choices:
            raise ValueError(f"{name} lists {item} twice")
        choices.append(int(value) if _is_integral(name) else value)
    return tuple(choices)


def _parse_range(name: str, text: str, meta: Any) -> SearchParam:
    parts = [part.strip() for part in text.split(":")]
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("log", "linear")):
        raise ValueError(f"a range of {name} is LOW:HIGH, LOW:HIGH:log or LOW:HIGH:linear, "
                         f"got {text!r}")
    low, high = (check_value(name, _typed(name, part)) for part in parts[:2])
    if not low < high:
        raise ValueError(f"a range of {name} needs LOW below HIGH, got {text!r}")
    log = parts[2] == "log" if len(parts) == 3 else bool(meta.get("log"))
    if log and low <= 0:
        raise ValueError(f"a log range of {name} needs LOW above 0, got {text!r}; use "
                         f"{name}={parts[0]}:{parts[1]}:linear")
    if _is_integral(name):
        low, high = int(low), int(high)
    return SearchParam(name, low=low, high=high, log=log)


def _typed(name: str, text: str) -> Any:
    """The text as the field's type; layer lists and choices are checked as text."""
    meta = field_spec(name).metadata
    if "choices" in meta or "max_layers" in meta:
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} takes numbers, got {text!r}") from None


def _is_integral(name: str) -> bool:
    return field_spec(name).type in ("int", int)


def _is_layer_list(name: str) -> bool:
    return "max_layers" in field_spec(name).metadata


def _declares_log(name: str) -> bool:
    return bool(field_spec(name).metadata.get("log"))
