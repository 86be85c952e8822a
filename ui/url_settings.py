"""The sidebar's settings in the page's address, both ways, so the address bar always
shares the current setup: `?preset=quick&learning_rate=0.01&hide=optimizer,dropout`.

Only what differs from the preset is written, so links stay short. A teacher's link can
also hide controls (`hide=` sidebar fields) and pages (`pages=` page names). Reading a link
keeps what is valid and names, in one line, what was ignored and why.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from engine import ENGINES
from engine.config import PRESETS, TrainConfig, check_value, field_spec, value_text

FIELDS = tuple(spec.name for spec in dataclasses.fields(TrainConfig))
# Parameters the pages own; a link may carry them and they are not settings.
PAGE_KEYS = frozenset({"visitor", "index", "view", "true", "predicted", "lesson", "config"})
HIDE, PAGES = "hide", "pages"
# Page names a `pages=` list may hold (the names in the pages' addresses).
PAGE_NAMES = ("lessons", "train", "evaluate", "draw", "inside", "mistakes", "compare",
              "models", "sweep")
HIDEABLE = ("engine", "preset", *FIELDS)
# The address's parameters this module writes (the rest belong to the pages).
LINK_KEYS = frozenset({"preset", "engine", HIDE, PAGES, *FIELDS})


@dataclasses.dataclass
class Link:
    """What a link asked for: settings to apply, controls and pages to hide, and what was
    ignored (one phrase each)."""

    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    hide: tuple[str, ...] = ()
    pages: tuple[str, ...] | None = None
    ignored: list[str] = dataclasses.field(default_factory=list)

    def note(self) -> str | None:
        return f"Ignored from the link: {'; '.join(self.ignored)}." if self.ignored else None


def read_link(params: dict[str, str]) -> Link:
    """The settings, hidden controls and pages a page's query parameters ask for."""
    link = Link()
    preset_name = params.get("preset", "default")
    if preset_name not in PRESETS:
        link.ignored.append(f"preset={preset_name} (presets: {', '.join(PRESETS)})")
        preset_name = "default"
    if "preset" in params and preset_name == params["preset"]:
        link.settings.update({"preset": preset_name, **PRESETS[preset_name].to_dict()})
    for key, text in params.items():
        if key in PAGE_KEYS or key == "preset":
            continue
        if key == HIDE:
            link.hide = _names(text, HIDEABLE, "hide", link.ignored)
        elif key == PAGES:
            link.pages = _names(text, PAGE_NAMES, "pages", link.ignored)
        elif key == "engine":
            if text in ENGINES:
                link.settings["engine"] = text
            else:
                link.ignored.append(f"engine={text} (engines: {', '.join(ENGINES)})")
        elif key in FIELDS:
            try:
                link.settings[key] = check_value(key, _typed(key, text))
            except ValueError as error:
                link.ignored.append(f"{key}={text} ({_reason(error)})")
        else:
            link.ignored.append(f"{key} (no such setting)")
    return link


def _names(text: str, allowed: tuple[str, ...], what: str, ignored: list[str]
           ) -> tuple[str, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown:
        kind = "control" if what == HIDE else "page"
        ignored.append(f"{what}={','.join(unknown)} (no such {kind})")
    return tuple(name for name in names if name in allowed)


def _typed(name: str, text: str) -> Any:
    spec = field_spec(name)
    if "choices" in spec.metadata or "max_layers" in spec.metadata:
        return text
    kind = int if spec.type in ("int", int) else float
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name} must be a {'whole ' if kind is int else ''}number") from None


def _reason(error: ValueError) -> str:
    """A config error without the field's name, which the note already shows."""
    text = str(error)
    first, _, rest = text.partition(" ")
    return rest if first in FIELDS and rest else text


def settings_params(values: dict[str, Any]) -> dict[str, str]:
    """The query parameters for `values` (engine, preset and every field): the preset,
    and only what differs from it."""
    preset_name = values.get("preset", "default")
    base = PRESETS.get(preset_name, PRESETS["default"]).to_dict()
    params: dict[str, str] = {}
    if preset_name != "default":
        params["preset"] = preset_name
    if values.get("engine", "numpy") != "numpy":
        params["engine"] = values["engine"]
    for name in FIELDS:
        value = values.get(name)
        if value is None or _same(name, value, base[name]):
            continue
        params[name] = _text(value)
    return params


def _same(name: str, value: Any, other: Any) -> bool:
    if isinstance(other, (list, tuple)):
        try:        # the sidebar holds a layer list as the text typed ("256, 128")
            return tuple(check_value(name, value)) == tuple(other)
        except ValueError:
            return False
    return value == other


def _text(value: Any) -> str:
    # The sidebar holds a layer list as the text typed ("256, 128").
    return value.replace(" ", "") if isinstance(value, str) else value_text(value)
