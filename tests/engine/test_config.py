"""The config: every field checked against its declared range, JSON round trips, presets."""

import dataclasses
import json

import pytest

from engine import ENGINES
from engine.config import (PRESETS, TrainConfig, describe, describe_range, engine_problem,
                           field_spec, preset)


def test_defaults_are_the_benchmarked_mlp():
    config = TrainConfig().validate()
    assert (config.hidden_sizes, config.activation, config.optimizer) == ((256, 128), "relu",
                                                                          "adam")
    assert (config.learning_rate, config.batch_size) == (1e-3, 128)


@pytest.mark.parametrize("name, value, message", [
    ("learning_rate", 5, "learning_rate must be in (0, 1], got 5"),
    ("learning_rate", 0, "learning_rate must be in (0, 1], got 0"),
    ("momentum", 1.0, "momentum must be in [0, 1), got 1"),
    ("batch_size", 0, "batch_size must be in [1, 4096], got 0"),
    ("batch_size", 12.5, "batch_size must be a whole number, got 12.5"),
    ("epochs", "ten", "epochs must be an integer, got 'ten'"),
    ("dropout", float("nan"), "dropout must be a finite number, got nan"),
    ("activation", "relu6", "activation must be one of relu, leaky_relu, tanh, sigmoid"),
    ("hidden_sizes", (256, 0), "hidden_sizes must hold sizes in [1, 2048], got 0"),
    ("hidden_sizes", (8,) * 7, "hidden_sizes must have at most 6 layers, got 7"),
    ("train_size", 60_001, "train_size must be in [100, 60000], got 60001"),
    ("seed", True, "seed must be an integer, got True"),
])
def test_validate_names_the_field_its_value_and_the_range(name, value, message):
    with pytest.raises(ValueError) as error:
        TrainConfig(**{name: value}).validate()
    assert message in str(error.value)


def test_every_numeric_field_rejects_just_outside_its_range():
    for spec in dataclasses.fields(TrainConfig):
        if "range" not in spec.metadata or "max_layers" in spec.metadata:
            continue
        low, high = spec.metadata["range"]
        step = 1 if spec.type == "int" else 1e-9
        below = low if spec.metadata.get("low_open") else low - step
        above = high if spec.metadata.get("high_open") else high + step
        for value in (below, above):
            with pytest.raises(ValueError, match=spec.name):
                TrainConfig(**{spec.name: value}).validate()


def test_batch_larger_than_the_training_images_is_an_inconsistent_combination():
    with pytest.raises(ValueError, match="batch_size must be at most the 90 training images"):
        TrainConfig(train_size=100, validation_fraction=0.1, batch_size=128).validate()


def test_json_round_trip_and_string_lists():
    config = TrainConfig(hidden_sizes=(64, 32), dropout=0.25, augmentation="light")
    assert TrainConfig.from_json(config.to_json()) == config
    assert TrainConfig.from_dict({"hidden_sizes": "512, 256"}).hidden_sizes == (512, 256)
    assert TrainConfig.from_dict({"hidden_sizes": []}).hidden_sizes == ()


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"learning_rte": 0.1}', "unknown config field(s): learning_rte"),
    ('{"hidden_sizes": "a,b"}', "hidden_sizes must be a list of integers"),
    ('{"hidden_sizes": [1.5]}', "hidden_sizes must hold whole numbers"),
])
def test_bad_json_is_explained(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig.from_json(text)


def test_presets_are_valid_and_distinct():
    for name, config in PRESETS.items():
        assert config.validate() is config, name
    assert len({config.to_json() for config in PRESETS.values()}) == len(PRESETS)
    assert preset("quick").epochs <= 3
    with pytest.raises(ValueError, match="preset must be one of"):
        preset("fastest")


def test_every_preset_trains_on_both_engines():
    # The CNN presets too: the Compare page trains one config on both engines.
    for name, config in PRESETS.items():
        for engine in ENGINES:
            assert engine_problem(engine, config) is None, (name, engine)


def test_replace_validates():
    with pytest.raises(ValueError, match="dropout"):
        TrainConfig().replace(dropout=2.0)
    assert TrainConfig().replace(epochs=3).epochs == 3


def test_auto_initialisation_follows_the_activation():
    assert TrainConfig(activation="leaky_relu").resolved_initialisation == "he"
    assert TrainConfig(activation="tanh").resolved_initialisation == "glorot"
    assert TrainConfig(activation="tanh", initialisation="he").resolved_initialisation == "he"


def test_descriptions_for_people():
    assert describe_range(field_spec("learning_rate")) == "(0, 1]"
    assert describe_range(field_spec("seed")) == "[0, 2147483647]"
    assert describe(TrainConfig()) == "MLP 784-256-128-10, relu, adam 0.001"
    assert describe(PRESETS["cnn"]).startswith("CNN conv 16-32-64 + dense 128-10")
    json.loads(TrainConfig().to_json())


def test_every_engine_builds_every_architecture_and_the_table_says_so(monkeypatch):
    from engine import ENGINES, engine_class
    from engine.config import ARCHITECTURES, engine_problem

    for engine in ENGINES:
        assert set(engine_class(engine).architectures) == set(ARCHITECTURES)
        for architecture in ARCHITECTURES:
            assert engine_problem(engine, TrainConfig(architecture=architecture)) is None
    # An engine that builds less is refused by the table's word, in one place.
    import engine

    module, name, _ = engine.ENGINE_CLASSES["numpy"]
    monkeypatch.setitem(engine.ENGINE_CLASSES, "numpy", (module, name, ("mlp",)))
    assert engine_problem("numpy", TrainConfig(architecture="cnn")) == \
        "the numpy engine builds mlp networks, not cnn"


def test_checking_an_engine_imports_neither_engine():
    # Every page checks the sidebar's settings; the NumPy network's modules take 60 ms
    # to import and Keras's much more, so the table answers without them.
    import subprocess
    import sys
    from pathlib import Path

    script = ("import sys\nfrom engine.config import TrainConfig, engine_problem\n"
              "for engine in ('numpy', 'keras'):\n"
              "    assert engine_problem(engine, TrainConfig(architecture='cnn')) is None\n"
              "print(sorted(name for name in sys.modules if name.startswith("
              "('engine.numpy_nn', 'engine.keras_nn'))))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
