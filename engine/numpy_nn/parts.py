"""Both cores for one training step: the batch is cut in two fixed halves, each run by
its own Python thread on single-threaded OpenBLAS, and the halves' gradients are summed.

Why not OpenBLAS's own threads: a batch's products are small, and OpenBLAS's workers
spin while they wait for each other, which on a shared 2-core machine turns a 1 s epoch
into 10-25 s (see `blas.py`). Two Python threads each running one-thread BLAS wait by
sleeping, and on an idle machine do twice the work (two threads of 1-thread matmul:
315 GFLOP/s against 164 on one, measured on the 2-core Sapphire Rapids).

How many threads: `DIGIT_LAB_THREADS` (1 or 2) if set, otherwise 2 when the process
may run on two or more CPUs (`os.sched_getaffinity`) and a step is large enough, else 1.
A step's parts meet Python's lock at each of its NumPy calls, and a small step's calls
are short: on the idle 2-core Xeon the default MLP (128 images of 235,000 multiply-adds,
30 million a step) took 0.86-0.90 s an epoch on two threads against 0.81-0.83 s on one,
while 60 million a step (batch 256) ran 8% faster on two and the cnn preset 40% faster.
Hence TWO_PART_MIN_MULTIPLY_ADDS. One thread runs today's whole-batch step. The cut is
fixed (first half, second half), sums over the halves are added in a fixed order, so a
run repeats exactly for its seed and thread count; one and two threads agree to float
rounding (a sum of two half-batch products rounds differently from one whole-batch
product). Set `DIGIT_LAB_THREADS=1` for weights that
are bit-for-bit the same on every machine.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Iterator

from engine.numpy_nn.denormals import denormals_flushed

THREADS_VARIABLE = "DIGIT_LAB_THREADS"
MAX_THREADS = 2


# Below this many multiply-adds a step, two parts are slower than one (see above).
TWO_PART_MIN_MULTIPLY_ADDS = 45_000_000


def training_thread_count(multiply_adds_per_step: int | None = None) -> int:
    """Threads a NumPy training step uses: 1 or 2 (see the module's docstring). Without
    the step's size, the count the machine allows."""
    setting = os.environ.get(THREADS_VARIABLE, "").strip()
    if setting:
        if setting not in ("1", "2"):
            raise ValueError(f"{THREADS_VARIABLE} must be 1 or 2, got {setting!r}")
        return int(setting)
    if multiply_adds_per_step is not None \
            and multiply_adds_per_step < TWO_PART_MIN_MULTIPLY_ADDS:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:                     # not Linux: no affinity to read
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cpus))


Task = Callable[[int], None]


class PartRunner:
    """Runs task(0) and task(1) of a step: the first in the calling thread, the second
    in a helper thread. The caller takes the second part itself when the helper has not
    started it yet, so a helper starved of CPU by other work costs no wait (parts never
    wait for each other inside a task: they meet only between runs).

    With one part, `run` is simply task(0).
    """

    def __init__(self, parts: int) -> None:
        if parts not in (1, 2):
            raise ValueError(f"parts must be 1 or 2, got {parts}")
        self.parts = parts
        self._lock = threading.Condition()
        self._task: Task | None = None
        self._context = contextvars.copy_context()
        self._generation = 0
        self._claimed = True
        self._closing = False
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._helper: threading.Thread | None = None
        if parts == 2:
            self._helper = threading.Thread(target=self._serve, name="numpy-step-part",
                                            daemon=True)
            self._helper.start()

    def run(self, task: Task) -> None:
        if self.parts == 1:
            task(0)
            return
        with self._lock:
            # The helper runs in a copy of the caller's context: NumPy's error state
            # (np.errstate) lives there.
            self._context = contextvars.copy_context()
            self._task, self._claimed, self._error = task, False, None
            self._done.clear()
            self._generation += 1
            self._lock.notify()
        try:
            task(0)
        except BaseException:
            self._finish_second(task, steal=False)
            raise
        self._finish_second(task, steal=True)
        if self._error is not None:
            raise self._error

    def _finish_second(self, task: Task, *, steal: bool) -> None:
        """Run the second part here (`steal`) or drop it, when the helper has not
        claimed it; wait for the helper when it has."""
        with self._lock:
            unclaimed = not self._claimed
            self._claimed = True
        if unclaimed:
            if steal:
                task(1)
        else:
            self._done.wait()

    def _serve(self) -> None:
        # The caller's training loop flushes denormals (denormals.py); so must its helper.
        with denormals_flushed():
            self._serve_tasks()

    def _serve_tasks(self) -> None:
        seen = 0
        while True:
            with self._lock:
                while self._generation == seen and not self._closing:
                    self._lock.wait()
                if self._closing:
                    return
                seen = self._generation
                if self._claimed:          # taken by the caller meanwhile
                    continue
                self._claimed = True
                task, context = self._task, self._context
            try:
                context.run(task, 1)
            except BaseException as error:      # handed to the caller, who raises it
                self._error = error
            finally:
                self._done.set()

    def close(self) -> None:
        if self._helper is None:
            return
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._helper.join()
        self._helper = None


@contextlib.contextmanager
def part_runner(parts: int) -> Iterator[PartRunner]:
    runner = PartRunner(parts)
    try:
        yield runner
    finally:
        runner.close()
