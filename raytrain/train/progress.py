"""Progress of a run as the user sees it, drawn by the driver: a bar in a terminal, lines in a log.

Rank 0 sends its step count and description to a :class:`ProgressBoard` actor (0 CPUs) at most a few times a second
(:class:`BoardWriter`); a thread on the driver reads the board and draws (:class:`DriverProgress`): a ``tqdm`` bar, or
:class:`ProgressLines` where stderr is not a terminal (Ray Jobs, CI, pipes). So progress needs no worker output
forwarded to the driver (the console stays quiet, see :mod:`raytrain.console`), and the bar ends when ``fit`` returns
(Ray's ``tqdm_ray`` draws worker bars from log messages, which can arrive after that: a bar whose 'closed' message came
late was redrawn by every later print). Public Ray APIs only: an actor, ``.remote`` calls, ``ray.get``.
"""

from __future__ import annotations

import sys
import threading
import time

import ray

from raytrain.data.passes import Passes


@ray.remote(num_cpus=0)
class ProgressBoard(Passes):
    """The latest (step, total, description) rank 0 reported; also the run's pass counter (:class:`Passes`: the
    workers set the pass of each patch stream, the crop tasks read it): one actor process per run for both."""

    def __init__(self) -> None:
        super().__init__()
        self.state: tuple[int, int, str] = (0, 0, "")

    def set(self, n: int, total: int, desc: str) -> None:
        self.state = (n, total, desc)

    def get(self) -> tuple[int, int, str]:
        return self.state


class BoardWriter:
    """The progress bar's interface (``update``, ``set_description``, ``close``) on rank 0: the first update (the
    resume step), descriptions and the close go to the board at once, later step counts at most every ``every_s``
    seconds (fire and forget: a training step never waits for it)."""

    def __init__(self, board, total: int, desc: str, every_s: float = 0.25):
        self.board, self.total, self.desc, self.n = board, total, desc, 0
        self.every_s, self.last = every_s, None

    def _send(self) -> None:
        self.board.set.remote(self.n, self.total, self.desc)
        self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.last is None or time.perf_counter() - self.last >= self.every_s:
            self._send()

    def set_description(self, desc: str) -> None:
        self.desc = desc
        self._send()

    def close(self) -> None:
        self._send()


class ProgressLines:
    """The progress bar's interface for logs: a line per description change (each validation) and at least every
    ``every_s`` seconds while steps advance (with the rate and the time left), instead of a bar redrawn in place.
    ``budget_s`` (``train.max_minutes``): the time left is at most what remains of it."""

    def __init__(self, total: int, desc: str, every_s: float = 30.0, file=None, budget_s: float | None = None):
        self.total, self.n, self.desc, self.t0 = total, 0, desc, time.perf_counter()
        self.every_s, self.last, self.file, self.budget_s = every_s, self.t0, file, budget_s
        self.n_first: int | None = None  # the step the first update reached (the resume step): the rate counts from it

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n_first is None:
            self.n_first = self.n
        if time.perf_counter() - self.last >= self.every_s:
            self._line()

    def set_description(self, desc: str) -> None:
        self.desc = desc
        self._line()

    def _line(self) -> None:
        now = time.perf_counter()
        self.last, el = now, now - self.t0
        done = self.n - (self.n_first or 0)
        est = el / done * (self.total - self.n) if 0 < done and self.n < self.total else None
        if self.budget_s is not None and self.n < self.total:
            rest = budget_left(self.budget_s, el)
            est = rest if est is None else min(est, rest)
        left = f" | {est:.0f} s left" if est is not None else ""
        print(f"{self.desc} | step {self.n}/{self.total} | {el:.0f} s{left}", file=self.file or sys.stdout, flush=True)

    def close(self) -> None:
        pass


def budget_left(budget_s: float, elapsed_s: float) -> float:
    """Seconds left of a time budget (never negative)."""
    return max(budget_s - elapsed_s, 0.0)


class DriverProgress:
    """Follows a :class:`ProgressBoard` from a daemon thread while ``fit`` runs and draws it: ``mode`` ``bar`` (a
    ``tqdm`` bar on stderr) or ``lines`` (:class:`ProgressLines` on stdout). A context manager around ``fit``: on
    exit it draws the board's last state and closes the bar. ``budget_s``: the run's time budget
    (``train.max_minutes``), shown as the time left where the step count alone would mislead (``train.steps`` is then
    a cap)."""

    def __init__(self, board, mode: str = "bar", every_s: float = 0.5, file=None, budget_s: float | None = None):
        if mode not in ("bar", "lines"):
            raise ValueError(f"progress mode {mode!r}: bar or lines")
        self.board, self.mode, self.every_s, self.file = board, mode, every_s, file
        self.budget_s = budget_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="raytrain-progress", daemon=True)
        self._bar = None

    @property
    def n(self) -> int:
        """The step drawn last (0 before the first draw)."""
        return self._bar.n if self._bar is not None else 0

    @property
    def desc(self) -> str:
        return self._bar.desc if self._bar is not None else ""

    def _draw(self) -> None:
        try:
            n, total, desc = ray.get(self.board.get.remote(), timeout=5)
        except Exception:  # noqa: BLE001 - progress is cosmetic: a slow or gone board never fails a run
            return
        if not total:
            return
        if self._bar is None:
            if self.mode == "bar":
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=desc, dynamic_ncols=True, file=self.file)
                self._t0 = time.perf_counter()  # the budget's clock starts with the first report, as ProgressLines's
            else:  # no description yet: the first draw prints a line
                self._bar = ProgressLines(total, "", file=self.file, budget_s=self.budget_s)
        if self.mode == "bar" and self.budget_s is not None:
            left = budget_left(self.budget_s, time.perf_counter() - self._t0)
            self._bar.set_postfix_str(f"time budget: {left:.0f} s left", refresh=False)
        if n != self._bar.n:
            self._bar.update(n - self._bar.n)
        if desc != self._bar.desc:
            if self.mode == "bar":
                self._bar.set_description_str(desc, refresh=True)
            else:
                self._bar.set_description(desc)

    def _follow(self) -> None:
        while not self._stop.wait(self.every_s):
            self._draw()

    def __enter__(self) -> DriverProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if exc[0] is None:
            self._draw()
        if self._bar is not None:
            self._bar.close()
