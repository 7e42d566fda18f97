"""The service's background threads: what the live twins and the online risk share
(:class:`ServiceThread`), and the worker over patients with new data that the online risk
runs (:class:`PatientWorker`)."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod

log = logging.getLogger("vitaltwin.service")


class ServiceThread(ABC):
    """A service's background thread: :meth:`start`, :meth:`stop` (wakes it through
    :attr:`_cond` and waits), :attr:`alive`; failures it records in :attr:`errors` and since
    when each patient's new data has waited in :attr:`waiting`."""

    name = "service"

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}
        self.waiting: dict[str, float] = {}  # patient -> since when new data waits (monotonic)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def _run(self) -> None:
        """The thread's loop, until :attr:`_stop` is set."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class PatientWorker(ServiceThread):
    """Keeps a set of patients with new data (:meth:`notify`) and, in its own thread, calls
    :meth:`update` for each; one patient's failure is recorded in :attr:`errors` and never
    stops the others. :attr:`waiting` says since when each queued patient's data has waited."""

    name = "patients"

    def __init__(self) -> None:
        super().__init__()
        self._dirty: set[str] = set()

    @abstractmethod
    def update(self, patient_id: str) -> int:
        """Work on one patient's new data."""

    def before(self) -> None:
        """Run once in the thread before the first patient (e.g. compiling)."""

    def after_round(self) -> None:
        """Run after each round of patients (e.g. checkpoints)."""

    def notify(self, patient_ids: list[str]) -> None:
        """New data for these patients was stored."""
        now = time.monotonic()
        with self._cond:
            self._dirty.update(patient_ids)
            for pid in patient_ids:
                self.waiting.setdefault(pid, now)
            self._cond.notify_all()

    def _run(self) -> None:
        self.before()
        while not self._stop.is_set():
            with self._cond:
                if not self._dirty:
                    self._cond.wait(0.5)
                dirty, self._dirty = self._dirty, set()
            for pid in sorted(dirty):
                with self._cond:
                    self.waiting.pop(pid, None)
                try:
                    self.update(pid)
                    self.errors.pop(pid, None)
                except Exception as exc:  # one patient's failure never stops the others
                    self.errors[pid] = f"{type(exc).__name__}: {exc}"
                    log.exception("%s: %s failed", self.name, pid)
            self.after_round()
