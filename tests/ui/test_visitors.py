"""Runs outlive reloads, not visitors: the heartbeat that keeps a shown run going, the
stop of a run nobody shows (in its own thread, and at the start of another run when the
server is full), the registry that hands a visitor's runs to their reloaded page and
never to another open tab, and the same through AppTest sessions.

The abandon limit is one second here (DIGIT_LAB_ABANDONED_SECONDS), with real threads."""

from __future__ import annotations

import threading
import time

import pytest

from engine.config import TrainConfig
from tests.pages.conftest import Dashboard
from ui import jobs, state, visitors
from ui.jobs import TrainingJob
from ui.visitors import VisitorRegistry

TINY = TrainConfig(hidden_sizes=(32,), epochs=1, batch_size=64, train_size=1000)
LONG = TrainConfig(hidden_sizes=(64,), epochs=20, batch_size=32, train_size=60_000)
TRAIN = "pages/1_train.py"


@pytest.fixture
def quick_abandon(monkeypatch):
    """One-second abandon limit, one run slot, every job stopped after the test."""
    monkeypatch.setenv("DIGIT_LAB_ABANDONED_SECONDS", "1")
    monkeypatch.setenv("DIGIT_LAB_MAX_CONCURRENT_RUNS", "1")
    monkeypatch.setattr(jobs, "_slots", None)
    started: list[TrainingJob] = []
    yield started
    for job in started:
        job.stop()
        job.join(60)


def start(started: list, job: TrainingJob) -> bool:
    started.append(job)
    return job.start()


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def heartbeat(job: TrainingJob, until: threading.Event, session_id: str | None = None
              ) -> threading.Thread:
    """A page's fragment: touches the job every 0.2 s until told to stop."""
    def beat() -> None:
        while not until.wait(0.2):
            job.touch(session_id)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    return thread


# ---- the heartbeat and the stop of abandoned runs ---------------------------------

def test_a_run_no_page_shows_stops_within_the_limit_and_frees_its_slot(mnist, quick_abandon):
    job = TrainingJob("numpy", LONG, mnist)
    assert start(quick_abandon, job)
    job.join(30)
    snapshot = job.snapshot()
    assert snapshot.status == "stopped", snapshot
    assert snapshot.message.startswith("no open page showed this run for 1 s")
    assert job.model is not None                   # what it learnt is kept
    assert start(quick_abandon, TrainingJob("numpy", TINY, mnist))


def test_a_run_a_page_keeps_showing_goes_on_and_stops_once_it_is_gone(mnist, quick_abandon):
    job = TrainingJob("numpy", LONG, mnist)
    page_closed = threading.Event()
    heartbeat(job, page_closed)
    assert start(quick_abandon, job)
    time.sleep(2.5)                                # two and a half limits
    assert job.running and job.snapshot().status == "running"
    page_closed.set()
    job.join(30)
    assert job.snapshot().status == "stopped"


def test_a_connected_tab_keeps_its_run_without_heartbeats(mnist, quick_abandon, monkeypatch):
    # A hidden tab's timers may be slowed to once a minute; its connection stays.
    connected = {"tab-1"}
    monkeypatch.setattr(jobs, "session_connected", lambda session: session in connected)
    job = TrainingJob("numpy", LONG, mnist)
    job.touch("tab-1")
    assert start(quick_abandon, job)
    time.sleep(2.5)
    assert job.running
    connected.clear()                              # the tab is closed
    job.join(30)
    assert job.snapshot().status == "stopped"


def test_a_full_server_gives_the_slot_of_an_abandoned_run_to_a_new_one(mnist, quick_abandon):
    abandoned = TrainingJob("numpy", LONG, mnist)
    page_closed = threading.Event()
    heartbeat(abandoned, page_closed)
    assert start(quick_abandon, abandoned)
    wait_until(lambda: abandoned.snapshot().progress is not None)
    assert not start(quick_abandon, TrainingJob("numpy", TINY, mnist))   # still shown
    page_closed.set()
    time.sleep(1.05)
    # Just past the limit: the run may not have seen it yet; the new start does not wait
    # for that, it stops the run and takes its slot.
    newcomer = TrainingJob("numpy", TINY, mnist)
    assert start(quick_abandon, newcomer)
    assert abandoned.snapshot().status == "stopped"
    newcomer.join(60)
    assert newcomer.snapshot().status == "completed"


def test_reap_abandoned_stops_only_runs_nobody_shows(mnist, quick_abandon, monkeypatch):
    monkeypatch.setenv("DIGIT_LAB_MAX_CONCURRENT_RUNS", "2")
    monkeypatch.setattr(jobs, "_slots", None)
    shown, left = TrainingJob("numpy", LONG, mnist), TrainingJob("numpy", LONG, mnist)
    page_open = threading.Event()
    heartbeat(shown, page_open)
    assert start(quick_abandon, shown) and start(quick_abandon, left)
    # Neither thread gets to check: every batch finds the job still shown.
    monkeypatch.setattr(TrainingJob, "_on_batch", lambda self, progress: None)
    time.sleep(1.2)
    assert jobs.reap_abandoned() == 1
    left.join(30)
    assert left.snapshot().status == "stopped" and shown.running
    page_open.set()


# ---- the registry ---------------------------------------------------------------------

def test_a_token_held_by_a_connected_tab_is_not_handed_over():
    live = {"tab-a"}
    registry = VisitorRegistry(connected=lambda session: session in live)
    assert registry.claim("token-a", "tab-a")
    assert registry.claim("token-a", "tab-a")                  # its own next run
    assert not registry.claim("token-a", "tab-b", wait=0.2)    # a copied address
    live.clear()                                               # tab A is closed
    assert registry.claim("token-a", "tab-b", wait=0)


def test_a_reload_waits_for_the_old_tab_to_disconnect():
    live = {"old-tab"}
    registry = VisitorRegistry(connected=lambda session: session in live)
    assert registry.claim("token", "old-tab")
    threading.Timer(0.3, live.clear).start()       # the old page's socket closes late
    assert registry.claim("token", "new-tab", wait=2.0)


def test_the_registry_keeps_a_visitors_runs_until_they_are_gone(mnist, quick_abandon):
    live = {"tab"}
    registry = VisitorRegistry(connected=lambda session: session in live)
    registry.claim("token", "tab")
    job = TrainingJob("numpy", TINY, mnist)
    assert start(quick_abandon, job)
    registry.keep("token", state.JOB, job)
    job.join(60)
    time.sleep(1.1)
    assert registry.reap() == 0                    # the tab is still connected
    assert registry.jobs("token") == {state.JOB: job}
    live.clear()
    assert registry.reap() == 1
    assert "token" not in registry and registry.jobs("token") == {}


def test_the_registry_stops_a_gone_visitors_run_and_forgets_it_once_ended(mnist, quick_abandon,
                                                                           monkeypatch):
    registry = VisitorRegistry(connected=lambda session: False)
    registry.claim("token", "tab")
    job = TrainingJob("numpy", LONG, mnist)
    assert start(quick_abandon, job)
    registry.keep("token", state.JOB, job)
    monkeypatch.setattr(TrainingJob, "_on_batch", lambda self, progress: None)
    time.sleep(1.2)
    assert registry.reap() == 0                    # stopped, but its thread is still ending
    job.join(30)
    assert job.snapshot().status == "stopped"
    assert registry.reap() == 1


def test_owner_ids_are_stable_per_token_and_do_not_contain_it():
    first, second = visitors.new_token(), visitors.new_token()
    assert first != second and visitors.TOKEN_PATTERN.fullmatch(first)
    assert visitors.owner_id(first) == visitors.owner_id(first)
    assert visitors.owner_id(first) != visitors.owner_id(second)
    assert first not in visitors.owner_id(first)


# ---- through the pages ----------------------------------------------------------------

def test_a_reloaded_page_gets_its_run_back_and_stops_it(dashboard):
    first = dashboard.open(TRAIN)
    token = first.session_state[visitors.TOKEN]
    assert first.query_params[visitors.QUERY_KEY] == token
    dashboard.configure(first, train_size=60_000, hidden_sizes="64", epochs=20, batch_size=32)
    dashboard.click(first, "Train")
    job = first.session_state[state.JOB]
    # The reload: a new session on the same address.
    reloaded = dashboard.open(TRAIN, query={visitors.QUERY_KEY: token})
    assert reloaded.session_state[visitors.TOKEN] == token
    assert reloaded.session_state[state.JOB] is job
    settings = reloaded.session_state[state.SETTINGS]
    assert (settings["hidden_sizes"], settings["epochs"], settings["batch_size"]) == \
        ([64], 20, 32), "the sidebar shows the run's settings, not the defaults"
    assert dashboard.texts(reloaded.caption)[0].startswith(
        "NumPy: MLP 784-64-10"), dashboard.texts(reloaded.caption)
    assert len(reloaded.get("progress")) == 1
    assert Dashboard.button(reloaded, "Train").disabled
    dashboard.click(reloaded, "Stop")
    dashboard.finish(reloaded, state.JOB)
    assert job.snapshot().status == "stopped"
    assert dashboard.texts(reloaded.warning)[0].startswith("Training stopped")
    # Its model is this session's active one, and it can be saved from here.
    assert reloaded.session_state[state.ACTIVE_MODEL].model is job.model
    assert any(box.label == "Name" for box in reloaded.text_input)


def test_other_visitors_and_made_up_tokens_get_no_run(dashboard):
    first = dashboard.open(TRAIN)
    dashboard.train(first)
    stranger = dashboard.open(TRAIN)
    assert stranger.session_state[visitors.TOKEN] != first.session_state[visitors.TOKEN]
    assert stranger.session_state[state.JOB] is None
    for junk in ("short", "../../etc", "x" * 200):
        at = dashboard.open(TRAIN, query={visitors.QUERY_KEY: junk})
        assert at.session_state[visitors.TOKEN] != junk
        assert at.session_state[state.JOB] is None
        assert at.query_params[visitors.QUERY_KEY] == at.session_state[visitors.TOKEN]


def test_a_reloaded_page_keeps_the_model_its_visitor_made_active(dashboard):
    first = dashboard.open("pages/7_models.py")
    token = first.session_state[visitors.TOKEN]
    first.selectbox(key="models_chosen").select("default-cnn").run()
    dashboard.click(first, "Make active")
    chosen = first.session_state[state.ACTIVE_MODEL]
    assert chosen.name == "default-cnn"
    reloaded = dashboard.open("pages/2_evaluate.py", query={visitors.QUERY_KEY: token})
    assert reloaded.session_state[state.ACTIVE_MODEL] is chosen
    assert chosen.name in reloaded.caption[0].value
    # Another visitor, and a made-up token, still start from the shipped default.
    for query in ({}, {visitors.QUERY_KEY: "x" * 30}):
        other = dashboard.open("pages/2_evaluate.py", query=query)
        assert other.session_state[state.ACTIVE_MODEL].name == state.DEFAULT_MODEL_NAME
