"""The benchmark's plumbing (its figures are not tests: the machines here are shared)."""

import json
import os

from engine.bench import (add_percent_of_peak, epoch_ratios, format_table,
                          training_flops_per_sample)
from tests.engine.cli_run import run


def test_flops_of_the_default_mlp_by_hand():
    # forward: 784*256 + 256*128 + 128*10 = 234,752 multiply-adds; backward twice that,
    # less the first layer's input gradient (784*256 = 200,704); x2 flops per multiply-add
    assert training_flops_per_sample((256, 128)) == 2 * (3 * 234_752 - 200_704)


def test_quick_bench_reports_each_part_as_json():
    result = run(dict(os.environ), "bench", "--quick", "--only", "data", "--only",
                 "numpy", "--only", "numpy-one-thread", "--only", "numpy-default", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["data"]["source"] in ("cache", "offline", "download")
    assert 0 < report["data"]["load_seconds_median"] < report["data"][
        "load_checked_seconds_median"]
    speed = report["numpy"]
    assert speed["images"] == 12_000 and speed["epochs"] == 2
    assert 0.5 < speed["test_accuracy"] <= 1.0 and speed["achieved_gflops"] > 0
    assert speed["threads"] in (1, 2) and report["numpy-one-thread"]["threads"] == 1
    assert report["numpy-one-thread"]["percent_of_one_core_peak"] > 0
    assert report["numpy-default"]["target_test_accuracy"] == 0.98
    table = format_table(report)
    assert "numpy-default" in table and "target >= 98.0%" in table


def test_a_failed_part_is_shown_and_makes_the_exit_status_1(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    no_mnist = {**os.environ, "HOME": str(home), "DIGIT_LAB_CACHE": str(tmp_path / "cache"),
                "DIGIT_LAB_MNIST_OFFLINE": "/nonexistent", "MNIST_PATH": "",
                "DIGIT_LAB_MNIST_URL": "http://127.0.0.1:9/mnist.npz"}
    no_mnist.pop("XDG_CACHE_HOME", None)
    no_mnist.pop("KERAS_HOME", None)
    result = run(no_mnist, "bench", "--only", "data")
    assert result.returncode == 1
    assert "MNIST load from cache: failed:" in result.stdout
    assert result.stderr.splitlines()[-1] == "error: bench part(s) failed: data"


def test_epoch_ratios_come_from_parts_of_the_same_run_that_succeeded():
    results = {"numpy": {"seconds_per_epoch_median": 1.0},
               "keras": {"seconds_per_epoch_median": 2.0},
               "keras-plain": {"seconds_per_epoch_median": 1.6}}
    assert epoch_ratios(results) == {"numpy_to_keras_epoch_ratio": 0.5,
                                     "numpy_to_plain_keras_epoch_ratio": 0.625,
                                     "keras_engine_to_plain_keras_ratio": 1.25}
    results["keras-plain"] = {"error": "no TensorFlow"}
    assert epoch_ratios(results) == {"numpy_to_keras_epoch_ratio": 0.5}


def test_the_cnn_pair_reports_each_engines_epoch_and_their_ratio():
    results = {"numpy-cnn-speed": {"seconds_per_epoch_median": 30.0},
               "keras-cnn-speed": {"seconds_per_epoch_median": 20.0}}
    assert epoch_ratios(results) == {"numpy_to_keras_cnn_epoch_ratio": 1.5,
                                     "numpy_cnn_seconds_per_epoch": 30.0,
                                     "keras_cnn_seconds_per_epoch": 20.0}


def test_quick_sweep_part_reports_time_memory_and_the_machines_load():
    # The part alone (--part), without the matrix-multiply peak every full run measures.
    result = run(dict(os.environ), "bench", "--quick", "--part", "sweep")
    assert result.returncode == 0, result.stderr
    sweep = json.loads(result.stdout.strip().splitlines()[-1])
    assert (sweep["trials"], sweep["epochs"], sweep["train_size"]) == (4, 1, 10_000)
    assert sweep["complete"] + sweep["pruned"] == 4
    assert 0 < sweep["memory_before_sweep_mb"] <= sweep["peak_memory_mb"]
    assert 0.5 < sweep["best_value"] <= 1.0 and len(sweep["load_average_before_after"]) == 2
    machine = {"cpus": 2, "numpy": "2", "matmul_peak_gflops_one_thread": 1,
               "matmul_peak_gflops_all_threads": 2}
    assert "sweep: 4 trials (" in format_table({"machine": machine, "sweep": sweep})


def test_percent_of_peak_is_each_runs_gflops_over_one_cores_peak():
    results = {"machine": {"matmul_peak_gflops_one_thread": 160.0},
               "numpy": {"achieved_gflops": 120.0}, "keras-plain": {"achieved_gflops": 200.0},
               "data": {"load_seconds_median": 0.1}, "numpy-cnn-speed": {"error": "x"}}
    add_percent_of_peak(results)
    assert results["numpy"]["percent_of_one_core_peak"] == 75.0
    assert results["keras-plain"]["percent_of_one_core_peak"] == 125.0
    assert "percent_of_one_core_peak" not in results["data"]


def test_the_statistics_cost_is_the_median_pair_plus_the_close_against_the_target():
    from engine.bench_stats import report_lines

    row = {"pair_ratio": 1.021, "pair_ratio_quartiles": [1.004, 1.05], "pairs": 12,
           "epoch_close_share": 0.004, "cost_share": 0.025, "target_share": 0.03,
           "hook_share": 0.009}
    over = dict(row, pair_ratio=1.04, cost_share=0.044)
    lines = report_lines({"stats-cost": {"numpy": row, "keras": over}})
    assert lines[0].startswith("training statistics, numpy: 2.50% of an epoch (target <= 3%: ok)")
    assert "median of 12 neighbouring pairs; quartiles 1.004-1.050" in lines[0]
    assert "hook timed in the loop: 0.90%" in lines[0]
    assert lines[1].startswith("training statistics, keras: 4.40% of an epoch "
                               "(target <= 3%: MISSED)")


def test_the_machine_line_names_the_cpu():
    from engine.bench import cpu_model

    name = cpu_model()
    assert name and name != "unknown"
    machine = {"cpu": name, "cpus": 2, "numpy": "2", "matmul_peak_gflops_one_thread": 1,
               "matmul_peak_gflops_all_threads": 2}
    assert format_table({"machine": machine}).startswith(f"machine: {name}, 2 cpus")
