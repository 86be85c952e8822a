"""Who a visitor is across reloads, and the runs this server keeps for each visitor.

A visitor is a random token kept in the page's URL (`?visitor=`): a reload, or the same
address opened again, finds the visitor's runs in a registry shared by every session, so
the run can be watched, stopped and saved again. A token whose tab is still connected is
never handed to a second tab: whoever opens a copied address gets a token of their own.
Runs nobody shows are stopped by ui.jobs; here the registry forgets visitors whose runs
have ended once no page has shown them for the same time.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from ui import state
from ui.limits import host_limits

QUERY_KEY = "visitor"
TOKEN = "visitor_token"                  # session state: this session's token
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{20,86}")
# Session-state keys of the runs a visitor gets back after a reload.
JOB_KEYS = (state.JOB, state.COMPARE_JOB, state.ADAPT_JOB, state.SWEEP_JOB,
            state.SWEEP_BEST_JOB, state.LR_FINDER_JOB)
# A reload closes the old tab's connection moments before the new tab's first run.
HANDOVER_WAIT_SECONDS = 2.0


def new_token() -> str:
    return secrets.token_urlsafe(24)


def owner_id(token: str) -> str:
    """What meta.json records as a model's owner: a hash, so a downloaded model card
    does not hand out the token that owns it."""
    return hashlib.sha256(f"digit-lab-visitor:{token}".encode()).hexdigest()[:32]


@dataclass
class _Visitor:
    session_id: str | None
    last_seen: float
    jobs: dict[str, Any] = field(default_factory=dict)
    # (the ActiveModel they chose, or None for "no model"); None: never chosen (default)
    active: tuple[Any] | None = None


class VisitorRegistry:
    """Tokens, the session holding each, and their runs, for the whole server process."""

    def __init__(self, connected: Callable[[str], bool] | None = None) -> None:
        self._lock = threading.Lock()
        self._visitors: dict[str, _Visitor] = {}
        self._connected = connected

    def _is_connected(self, session_id: str | None) -> bool:
        if self._connected is None:
            from ui.jobs import session_connected    # lazy: see ui.sidebar's job check
            self._connected = session_connected
        check = self._connected
        return bool(session_id) and check(session_id)

    def claim(self, token: str, session_id: str | None, *,
              wait: float = HANDOVER_WAIT_SECONDS) -> bool:
        """Make `session_id` the holder of `token`; False while another connected session
        holds it (waiting up to `wait` seconds for a reloaded tab's old session to go)."""
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                visitor = self._visitors.get(token)
                holder = visitor.session_id if visitor is not None else None
                if holder in (None, session_id) or not self._is_connected(holder):
                    if visitor is None:
                        visitor = self._visitors[token] = _Visitor(session_id, time.monotonic())
                    visitor.session_id, visitor.last_seen = session_id, time.monotonic()
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def seen(self, token: str, session_id: str | None) -> None:
        """A page of this visitor ran now."""
        with self._lock:
            visitor = self._visitors.setdefault(token, _Visitor(session_id, 0.0))
            visitor.session_id, visitor.last_seen = session_id, time.monotonic()

    def keep(self, token: str, key: str, job: Any) -> None:
        """Remember the visitor's run under its session-state key (replacing the last)."""
        with self._lock:
            visitor = self._visitors.setdefault(token, _Visitor(None, time.monotonic()))
            visitor.jobs[key] = job

    def keep_active(self, token: str, active: Any) -> None:
        """Remember the model the visitor chose to make active (None: no model)."""
        with self._lock:
            visitor = self._visitors.setdefault(token, _Visitor(None, time.monotonic()))
            visitor.active = (active,)

    def active(self, token: str) -> tuple[Any] | None:
        """(the chosen model or None), or None when the visitor never chose one."""
        with self._lock:
            visitor = self._visitors.get(token)
            return visitor.active if visitor is not None else None

    def jobs(self, token: str) -> dict[str, Any]:
        with self._lock:
            visitor = self._visitors.get(token)
            return dict(visitor.jobs) if visitor is not None else {}

    def __contains__(self, token: str) -> bool:
        with self._lock:
            return token in self._visitors

    def reap(self) -> int:
        """Forget visitors who are gone and whose runs have all ended, after stopping any
        run of theirs that is abandoned; how many visitors were forgotten."""
        limit = host_limits().abandoned_seconds
        now = time.monotonic()
        with self._lock:
            gone = [(token, visitor) for token, visitor in self._visitors.items()
                    if now - visitor.last_seen > limit
                    and not self._is_connected(visitor.session_id)]
        forgotten = 0
        for token, visitor in gone:
            live = [job for job in visitor.jobs.values() if job.running]
            for job in live:
                if job.abandoned():
                    job.stop(abandoned=True)
            if not live:
                with self._lock:
                    if self._visitors.get(token) is visitor:
                        del self._visitors[token]
                        forgotten += 1
        return forgotten


registry = VisitorRegistry()


def session_id() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else None


def attach() -> str:
    """This session's token: on its first run taken from the URL if no other open tab holds
    it (a new one otherwise), with the visitor's kept runs put back in the session; on
    every run written back into the URL, which a page switch clears."""
    token = st.session_state.get(TOKEN)
    if token is None:
        token = _claimed_token()
        st.session_state[TOKEN] = token
        chosen = registry.active(token)
        if chosen is not None and not st.session_state.get(state.ACTIVE_CHOSEN):
            # The model they made active before the reload, not the shipped default.
            st.session_state[state.ACTIVE_MODEL], = chosen
            st.session_state[state.ACTIVE_CHOSEN] = True
        for key, job in registry.jobs(token).items():
            if st.session_state.get(key) is None:
                st.session_state[key] = job
                if key == state.JOB:
                    # The sidebar shows what the run trains, not the defaults a reload
                    # would bring (its caption would describe another network).
                    st.session_state[state.SETTINGS] = {
                        **state.settings(), "engine": job.engine, **job.config.to_dict()}
    else:
        registry.seen(token, session_id())
    if st.query_params.get(QUERY_KEY) != token:
        st.query_params[QUERY_KEY] = token
    for key in JOB_KEYS:
        watch(st.session_state.get(key))
    return token


def _claimed_token() -> str:
    registry.reap()
    offered = st.query_params.get(QUERY_KEY, "")
    if TOKEN_PATTERN.fullmatch(offered) and registry.claim(offered, session_id()):
        return offered
    token = new_token()
    registry.claim(token, session_id())
    return token


def token() -> str:
    """This session's token (attach() has run: every page's sidebar calls it first)."""
    return st.session_state.get(TOKEN) or attach()


def switch_page(page: str, **params: str) -> None:
    """Open `page` with its parameters and the visitor token, in the order the page will
    write them: the address is then final at once, and the browser's history gets one
    entry for the switch, not one per parameter (which made Back land on the same page
    without its parameters, and the page put them back)."""
    st.switch_page(page, query_params={QUERY_KEY: token(), **params})


def watch(job: Any) -> None:
    """A page of this session shows `job` now: its heartbeat."""
    if job is not None:
        job.touch(session_id())


def keep_active(active: Any) -> None:
    """Remember the model this visitor made active, so a reload finds it."""
    token = st.session_state.get(TOKEN)
    if token is not None:
        registry.keep_active(token, active)


def keep(key: str, job: Any) -> None:
    """Remember a run the visitor just started, so a reload finds it."""
    registry.reap()
    registry.keep(token(), key, job)
