"""Progress for long runs: a tqdm bar on a terminal, plain log lines elsewhere; and Ctrl-C as a
request to stop cleanly at the next step boundary (a second Ctrl-C stops at once)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any


class Progress:
    """mode: "auto" (a bar when stderr is a terminal, else log lines), "bar", "log" or "off"."""

    def __init__(self, mode: str = "auto"):
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = mode

    def say(self, message: str) -> None:
        if self.mode != "off":
            print(message, flush=True)

    def bar(self, total: int, initial: int, description: str, unit: str = "samples") -> Bar:
        return Bar(self.mode, total, initial, description, unit)


class Bar:
    """Loss, learning rate and throughput per step; ~10 log lines per epoch without a TTY."""

    def __init__(self, mode: str, total: int, initial: int, description: str,
                 unit: str = "samples"):
        self.mode, self.total, self.n, self.description = mode, total, initial, description
        self.unit = unit
        self.every = max(1, total // 10)
        self.last_line = time.perf_counter()
        self.tqdm = None
        if mode == "bar":
            from tqdm import tqdm
            self.tqdm = tqdm(total=total, initial=initial, desc=description, unit="batch",
                             dynamic_ncols=True, leave=False)

    def update(self, loss: float, lr: float, rate: float) -> None:
        self.n += 1
        if self.tqdm is not None:
            self.tqdm.set_postfix_str(f"loss {loss:.4f}, lr {lr:.2e}, {rate:,.1f} {self.unit}/s",
                                      refresh=False)
            self.tqdm.update(1)
        elif self.mode == "log" and (self.n % self.every == 0 or self.n == self.total):
            print(f"{self.description} step {self.n}/{self.total}: loss {loss:.4f}, "
                  f"lr {lr:.2e}, {rate:,.1f} {self.unit}/s", flush=True)

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()


class StopRequest:
    """`with StopRequest() as stop:` — the first SIGINT (Ctrl-C) or SIGTERM (a scheduler's or
    `kill`'s stop) sets stop.requested and stop.signal; a second one raises KeyboardInterrupt
    as usual. Outside the main thread it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signal = 0
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signal = True, signum
        again = "Ctrl-C" if signum == signal.SIGINT else "the signal"
        print(f"\nstopping after this step and saving a checkpoint ({again} again to abort)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
