"""The sidebar every page draws: navigation, the active model, and the hyperparameter
widgets, generated from the config's declared ranges. It returns plain values."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import streamlit as st

from engine.config import (PRESETS, TrainConfig, default_engine, describe_range,
                           engine_problem, field_spec, parse_settings)
from ui import state, url_settings, visitors
from ui.limits import host_limits

PAGES = (
    ("dashboard.py", "Home", ":material/home:"),
    ("pages/0_lessons.py", "Lessons", ":material/school:"),
    ("pages/1_train.py", "Train", ":material/model_training:"),
    ("pages/2_evaluate.py", "Evaluate", ":material/analytics:"),
    ("pages/3_draw.py", "Draw & test", ":material/draw:"),
    ("pages/4_inside.py", "Inside", ":material/neurology:"),
    ("pages/5_mistakes.py", "Mistakes", ":material/error:"),
    ("pages/6_compare.py", "Compare", ":material/compare_arrows:"),
    ("pages/7_models.py", "Models", ":material/inventory_2:"),
    ("pages/8_sweep.py", "Sweep", ":material/tune:"),
)
ENGINE_LABELS = {"numpy": "NumPy (from scratch)", "keras": "Keras / TensorFlow"}
# Widgets in the order people think about a network: shape, learning, data.
LAYOUT = {
    "Network": ("architecture", "hidden_sizes", "conv_filters", "activation",
                "initialisation", "dropout"),
    "Learning": ("optimizer", "learning_rate", "momentum", "lr_schedule", "batch_size",
                 "epochs", "l2"),
    "Data": ("train_size", "validation_fraction", "augmentation", "seed"),
}
SLIDER_STEPS = {"dropout": 0.05, "validation_fraction": 0.05, "momentum": 0.01,
                "train_size": 100}
# Fields picked on a log scale, from round values people read ("0.0003", "1e-6").
LOG_SCALE = {"learning_rate": (1e-6, 1.0), "l2": (1e-6, 0.1)}
_URL_CONFIG = "_imported_url_config"   # the ?config= text already applied
_LINK_READ = "_settings_link_read"     # the link's settings were applied (once a session)
_LINK_NOTE = "_settings_link_note"     # what the link asked for that was ignored
HIDDEN_CONTROLS = "hidden_controls"    # sidebar controls a teacher's link hides
SHOWN_PAGES = "shown_pages"            # the pages a teacher's link leaves, or None


@dataclass(frozen=True)
class Settings:
    """What the sidebar holds: the engine, and the config or why it is invalid."""

    engine: str
    config: TrainConfig | None
    error: str | None


def render_sidebar(*, settings_expanded: bool = False) -> Settings:
    """Draw the sidebar; every page calls this first."""
    state.init_session()
    visitors.attach()
    _import_from_url()
    _read_link_once()
    job = st.session_state.get(state.JOB)
    if job is not None:
        # A run that ended while the visitor was on another page becomes active here,
        # before the status lines below describe the active model.
        if job.snapshot().finished:
            # Imported here: the training view and the job machinery behind it are a
            # sixth of the imports a fresh server's Home page waits for.
            from ui.train_view import activate_finished
            activate_finished(job)
    with st.sidebar:
        note = st.session_state.pop(_LINK_NOTE, None)
        if note:
            st.caption(note)
            # Also on the page itself: on a phone the sidebar starts folded.
            st.toast(note, icon=":material/link_off:")
        for path, label, icon in shown_pages():
            st.page_link(path, label=label, icon=icon)
        st.divider()
        _status_lines(job)
        # Drawn only while open: a folded panel's two dozen widgets were a fifth of
        # Home's first appearance, and its settings are known without them.
        panel = st.expander("Hyperparameters", expanded=settings_expanded,
                            key="hyperparameters_open" if settings_expanded
                            else "hyperparameters_folded", on_change="rerun")
        if panel.open:
            with panel:
                settings = _settings_widgets()
        else:
            settings = _validated(state.settings())
        _write_link()
        return settings


def shown_pages() -> list[tuple[str, str, str]]:
    """The sidebar's pages, less those a teacher's link leaves out (Home always stays)."""
    kept = st.session_state.get(SHOWN_PAGES)
    if kept is None:
        return list(PAGES)
    return [page for page in PAGES if page[0] == "dashboard.py" or _page_name(page[0]) in kept]


def _page_name(path: str) -> str:
    """"pages/4_inside.py" -> "inside", the name in the page's address."""
    return path.rsplit("/", 1)[-1].split("_", 1)[-1].removesuffix(".py")


def _read_link_once() -> None:
    """Apply the settings, hidden controls and pages the arrival link asks for, once per
    session; later the address only mirrors the sidebar."""
    if st.session_state.get(_LINK_READ):
        return
    st.session_state[_LINK_READ] = True
    link = url_settings.read_link(dict(st.query_params))
    values = state.settings()
    if link.settings:
        values.update(link.settings)
        if "engine" not in link.settings and engine_problem(
                values["engine"], PRESETS[values["preset"]]):
            values["engine"] = default_engine(PRESETS[values["preset"]])
    st.session_state[HIDDEN_CONTROLS] = link.hide
    st.session_state[SHOWN_PAGES] = link.pages
    if link.note():
        st.session_state[_LINK_NOTE] = link.note()


def _write_link() -> None:
    """Mirror the settings (what differs from the preset) and a teacher's hide/pages
    lists in the address, leaving the page's own parameters alone."""
    wanted = url_settings.settings_params(state.settings())
    if st.session_state.get(HIDDEN_CONTROLS):
        wanted[url_settings.HIDE] = ",".join(st.session_state[HIDDEN_CONTROLS])
    if st.session_state.get(SHOWN_PAGES) is not None:
        wanted[url_settings.PAGES] = ",".join(st.session_state[SHOWN_PAGES])
    for key in list(st.query_params):
        known = key in url_settings.LINK_KEYS or key in url_settings.PAGE_KEYS
        if (key in url_settings.LINK_KEYS and key not in wanted) or not known:
            del st.query_params[key]        # stale, or ignored from the link
    changed = {key: value for key, value in wanted.items()
               if st.query_params.get(key) != value}
    if changed:
        st.query_params.update(changed)


def _status_lines(job: Any) -> None:
    summary = state.active_summary()
    st.caption(f"**Active model:** {summary}" if summary is not None
               else "**Active model:** none yet: train one or pick one on Models")
    if job is not None and not job.snapshot().finished:
        _training_status()


@st.fragment(run_every=2.0)
def _training_status() -> None:
    """The visitor's run in one line, kept current on every page while it trains."""
    job = st.session_state.get(state.JOB)
    visitors.watch(job)
    snapshot = job.snapshot() if job is not None else None
    if snapshot is None or snapshot.finished:
        # Ended: one full rerun makes the new model active and redraws this page.
        st.rerun(scope="app")
    st.caption(f"**Training:** {training_line(snapshot)}")


def training_line(snapshot: Any) -> str:
    """Where a run is, down to the batch: the line moves every few seconds even when an
    epoch takes minutes."""
    progress = snapshot.progress
    if progress is None:
        return "preparing the data and the network"
    return (f"epoch {progress.epoch} of {snapshot.config.epochs}, batch {progress.batch} of "
            f"{progress.batches_per_epoch} ({snapshot.fraction_done:.0%} done)")


def _settings_widgets() -> Settings:
    values = state.settings()
    hidden = set(st.session_state.get(HIDDEN_CONTROLS) or ())
    if "preset" not in hidden:
        # A preset applies when picked: every hyperparameter below takes its values.
        _widget("preset", st.selectbox, "Preset", options=list(PRESETS),
                callback=_apply_preset, help="Picking one sets every hyperparameter below")
        changed = changed_from_preset(values)
        if changed:
            st.caption(f"Changed from {values['preset']}: {', '.join(changed)}")
    if "engine" not in hidden:
        _widget("engine", st.radio, "Engine", options=list(ENGINE_LABELS),
                format_func=ENGINE_LABELS.get, horizontal=True)
    slots = {}
    for section, names in LAYOUT.items():
        shown = [name for name in names if not _hidden(name, values) and name not in hidden]
        if not shown:
            continue
        st.markdown(f"**{section}**")
        for name in shown:
            _config_widget(name)
            slots[name] = st.empty()
    settings = _validated(values)
    if settings.error:
        field_name = _field_in(settings.error)
        target = slots.get(field_name) or st
        target.error(settings.error, icon=":material/error:")
    _share_controls(settings)
    return settings


def changed_from_preset(values: dict[str, Any]) -> list[str]:
    """The settings that differ from the chosen preset's (so "default" is not claimed for
    a setup a lesson or a link changed)."""
    return [name for name in url_settings.settings_params(values)
            if name not in ("preset", "engine")]


def _hidden(name: str, values: dict[str, Any]) -> bool:
    if name == "conv_filters":
        return values["architecture"] != "cnn"
    if name == "momentum":
        return values["optimizer"] not in ("momentum", "nesterov")
    return False


def _widget(name: str, make: Any, label: str, *, callback: Any = None, **options: Any) -> Any:
    key = f"w_{name}"
    # Re-seed the widget from the persistent value: its own state is gone after a page
    # switch, and the persistent value is kept current by the callback.
    st.session_state[key] = _to_widget(name, state.settings()[name])
    return make(label, key=key, on_change=_store, args=(name, callback), **options)


def _config_widget(name: str) -> None:
    spec = field_spec(name)
    meta, label = spec.metadata, name.replace("_", " ").capitalize()
    limits = host_limits()
    if "choices" in meta:
        _widget(name, st.selectbox, label, options=list(meta["choices"]), help=meta["help"])
    elif name in LOG_SCALE:
        _widget(name, st.select_slider, label,
                options=log_choices(name, state.settings()[name]),
                format_func=readable_number, help=meta["help"] + " Log scale.")
    elif "max_layers" in meta:
        _widget(name, st.text_input, label, help=meta["help"] + " Comma-separated.")
    else:
        low, high = meta["range"]
        integral = spec.type in ("int", int)
        if name == "epochs":
            # Never below the value held: a slider past its maximum raises on every page,
            # while a value over the host's limit gets a message under it (host_problem).
            high = max(min(high, limits.max_epochs), state.settings()[name])
        if meta.get("low_open"):
            low = 1e-6
        if name in SLIDER_STEPS or name == "epochs":
            step = SLIDER_STEPS.get(name, 1)
            _widget(name, st.slider, label, min_value=low, max_value=high, step=step,
                    help=meta["help"])
        else:
            # No min_value/max_value: the browser would only outline an out-of-range
            # number in red and drop it; the config's own message says what is allowed.
            kind = int if integral else float
            _widget(name, st.number_input, label, step=kind(1) if integral else None,
                    help=f"{meta['help']} Range {describe_range(spec)}.")


def _to_widget(name: str, value: Any) -> Any:
    if name in ("hidden_sizes", "conv_filters") and isinstance(value, (list, tuple)):
        return ", ".join(str(size) for size in value)
    return value


def _store(name: str, then: Any = None) -> None:
    state.settings()[name] = st.session_state[f"w_{name}"]
    if then is not None:
        then()


def log_choices(name: str, current: float) -> list[float]:
    """1, 2, 3 and 5 per decade across the field's log range (and 0 where the field
    allows it), with the current value added if a link or an import set another."""
    low, high = LOG_SCALE[name]
    values = [mantissa * 10.0 ** exponent
              for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
              for mantissa in (1, 2, 3, 5)]
    values = [float(f"{value:.3g}") for value in values if low <= value * (1 + 1e-9)
              and value <= high * (1 + 1e-9)]
    if field_spec(name).metadata["range"][0] == 0 and not field_spec(name).metadata.get(
            "low_open"):
        values.insert(0, 0.0)
    if isinstance(current, (int, float)) and current not in values:
        values = sorted({*values, float(current)})
    return values


def readable_number(value: float) -> str:
    """0.0003 as "0.0003", 5e-06 as "5e-6": plain decimals down to 1e-4."""
    if value == 0:
        return "0"
    if value >= 1e-4:
        return f"{value:.6f}".rstrip("0").rstrip(".")
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _apply_preset() -> None:
    values = state.settings()
    chosen = PRESETS[values["preset"]]
    values.update(chosen.to_dict())
    if engine_problem(values["engine"], chosen):    # a preset this engine cannot build
        values["engine"] = default_engine(chosen)


def _validated(values: dict[str, Any]) -> Settings:
    engine = values["engine"]
    config_values = {spec.name: values[spec.name] for spec in dataclasses.fields(TrainConfig)}
    try:
        config = TrainConfig.from_dict(config_values)
    except (TypeError, ValueError) as error:
        return Settings(engine, None, str(error))
    problem = host_problem(engine, config)
    return Settings(engine, None, problem) if problem else Settings(engine, config, None)


def host_problem(engine: str, config: TrainConfig) -> str | None:
    """Why this engine/config cannot run on this host, or None."""
    limits = host_limits()
    problem = engine_problem(engine, config)
    if problem:
        return f"{problem}; pick another engine or architecture"
    if config.epochs > limits.max_epochs:
        return f"epochs must be at most {limits.max_epochs} on this server"
    if any(size > limits.max_hidden_width for size in config.hidden_sizes):
        return (f"hidden_sizes must be at most {limits.max_hidden_width} units per layer on "
                "this server")
    if config.architecture == "cnn" and any(
            size > limits.max_conv_filters for size in config.conv_filters):
        return f"conv_filters must be at most {limits.max_conv_filters} on this server"
    return None


def _field_in(message: str) -> str | None:
    """The field a message is about: config and host messages start with its name."""
    first_word = message.split(" ", 1)[0]
    return first_word if any(first_word in names for names in LAYOUT.values()) else None


# ---- export and import: JSON and the page's URL ----------------------------------

def _share_controls(settings: Settings) -> None:
    with st.popover("Copy link", icon=":material/link:", width="stretch"):
        st.caption("This page with these settings (the address bar holds them too, with "
                   "your visitor token, which is yours alone: share this link instead). "
                   "Add `hide=optimizer,dropout` to hide controls or `pages=train,evaluate` "
                   "to show only some pages.")
        st.code(share_link(), language=None, wrap_lines=True)
    with st.popover("Settings file", icon=":material/description:", width="stretch"):
        # Invalid settings cannot be saved, but a good config can still be pasted in.
        if settings.config is not None:
            payload = json.dumps({"engine": settings.engine, **settings.config.to_dict()})
            st.download_button("Download JSON", payload, file_name="digit-lab-config.json",
                               mime="application/json", width="stretch")
        text = st.text_area("Paste a config (JSON)", key="w_import_text", height=100,
                            help="Fields left out keep their current values; a model's "
                                 "meta.json works too")
        if st.button("Import", width="stretch") and text.strip():
            message = import_config(text)
            if message:
                st.error(f"Not imported: {message}")
            else:
                # The widgets above were drawn with the old values: draw them again.
                st.toast("Imported.", icon=":material/check:")
                st.rerun()


def share_link() -> str:
    """This page's address with its settings and parameters, without the visitor token."""
    from urllib.parse import urlencode

    page = (st.context.url or "").split("?", 1)[0]
    params = {key: value for key, value in st.query_params.items()
              if key != visitors.QUERY_KEY}
    params.update(url_settings.settings_params(state.settings()))
    return f"{page}?{urlencode(params, safe=',')}" if params else page


def import_config(text: str) -> str | None:
    """Merge a JSON config (or a model's meta.json) into the settings; None on success,
    else the reason."""
    current = state.settings()
    try:
        engine, data = parse_settings(text)
        engine = engine or current["engine"]
        fields = {spec.name: current[spec.name] for spec in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}")
        config = TrainConfig.from_dict({**fields, **data})
    except (ValueError, TypeError) as error:
        return str(error)
    current.update({"engine": engine, **config.to_dict()})
    return None


def _import_from_url() -> None:
    text = st.query_params.get("config")
    if text and st.session_state.get(_URL_CONFIG) != text:
        st.session_state[_URL_CONFIG] = text
        message = import_config(text)
        if message:
            st.toast(f"The settings in the link were not used: {message}")
