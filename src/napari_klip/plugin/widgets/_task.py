"""The part every napari-klip widget shares: run a job in a worker thread, with progress and Cancel.

A widget subclasses :class:`TaskWidget` and implements :meth:`TaskWidget.prepare`, which reads
the widget and the viewer on the main thread and returns a :class:`Job`. The job's ``work``
runs in a ``napari.qt.threading`` worker with two callables: ``report(step, total, text)`` for
the napari progress bar, and ``should_cancel()`` for the Cancel button. Layers are only touched
by ``finish``, on the main thread, after the work returned — so a cancelled or failed run leaves
nothing half-made. Errors become napari notifications and reset the widget.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from magicgui.widgets import Container, PushButton
from qtpy.QtCore import QEvent, QObject, QSize, Qt, Signal
from qtpy.QtWidgets import QFrame, QScrollArea

from ...core.errors import Cancelled
from ._controls import info_label

Report = Callable[[int, int, str], None]
ShouldCancel = Callable[[], bool]


@dataclass
class Job:
    """One run of a widget.

    Attributes
    ----------
    work : callable
        ``work(report, should_cancel) -> result``, run in the worker thread; raises
        :class:`~napari_klip.core.errors.Cancelled` when it stopped because ``should_cancel()``
        was true. It must not touch layers or widgets.
    finish : callable
        ``finish(result)``, run on the main thread with the result of a run that was not cancelled.
    total : int
        Steps for the progress bar.
    description : str
        Progress bar label.
    """

    work: Callable[[Report, ShouldCancel], Any]
    finish: Callable[[Any], None]
    total: int
    description: str


class _ProgressRelay(QObject):
    """Carries progress from the worker thread to the main thread (a queued Qt signal)."""

    progressed = Signal(int, int, str)


#: Height (px) the settings form keeps at least before it scrolls; the dock's minimum height is this
#: plus the Run button and the status lines, so four docked widgets fit a laptop screen.
FORM_MIN_HEIGHT = 100


class FormScrollArea(QScrollArea):
    """A vertical scroll area for a widget's settings form.

    Its minimum width is the form's (nothing is cut off sideways, no horizontal scroll bar);
    its minimum height is at most :data:`FORM_MIN_HEIGHT`, so a tall form scrolls instead of
    making the window taller. Its preferred size is the whole form.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def _chrome_width(self) -> int:
        return self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        inner = self.widget().minimumSizeHint() if self.widget() is not None else QSize(0, 0)
        return QSize(inner.width() + self._chrome_width(), min(inner.height(), FORM_MIN_HEIGHT))

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        inner = self.widget().sizeHint() if self.widget() is not None else QSize(0, 0)
        return QSize(inner.width() + self._chrome_width(), inner.height() + 2 * self.frameWidth())


class _UndockWatch(QObject):
    """Calls ``on_undocked`` when the watched widget loses its parent after having had one.

    napari's ``remove_dock_widget`` (the dock's close button) takes the widget out with
    ``setParent(None)`` and does not destroy it, so ``destroyed`` alone misses it.
    """

    def __init__(self, widget: Any, on_undocked: Callable[[], None]):
        super().__init__()
        self._on_undocked = on_undocked
        widget.installEventFilter(self)

    def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ParentChange and watched.parent() is None:
            self._on_undocked()
        return False


def run_per_slice(
    items: list[Any], process: Callable[..., Any], steps_per_item: int, report: Report, should_cancel: ShouldCancel
) -> list[Any]:
    """Process the slices of a stack one after another, reporting progress over all of them.

    Parameters
    ----------
    items : list
        One entry per slice.
    process : callable
        ``process(item, position, progress)`` with ``progress(step)`` for steps within the item;
        raises :class:`~napari_klip.core.errors.Cancelled` when it was cancelled.
    steps_per_item : int
        Steps one item reports.
    report, should_cancel
        As given to a job's ``work``.

    Returns
    -------
    list
        One result per item.

    Raises
    ------
    Cancelled
        When ``should_cancel()`` became true.
    """
    total = steps_per_item * len(items)
    results = []
    for position, item in enumerate(items):
        text = f"slice {position + 1}/{len(items)}" if len(items) > 1 else ""

        def progress(step: int, offset: int = position * steps_per_item, text: str = text) -> None:
            report(offset + step, total, text)

        results.append(process(item, position, progress))
        if should_cancel():
            raise Cancelled(f"cancelled after slice {position + 1}")
        report((position + 1) * steps_per_item, total, text)
    return results


class TaskWidget(Container):
    """A dock widget with a Run button that becomes Cancel while its job runs.

    The settings go into :attr:`form` (a labelled container in a :class:`FormScrollArea`);
    the Run button, the status line and whatever subclasses append to the widget itself stay
    visible below it.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    title : str
        Used in notifications and the progress bar.
    """

    run_text = "Run"
    cancelled_text = "Cancelled: nothing was added or changed."

    def __init__(self, napari_viewer: Any, title: str):
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self.title = title
        self.form = Container(labels=True)
        self.append(self.form)
        self.form_scroll = FormScrollArea()
        layout = self.native.layout()
        layout.insertWidget(layout.indexOf(self.form.native), self.form_scroll)
        self.form_scroll.setWidget(self.form.native)  # takes the form out of the layout: one item again
        self.run_button = PushButton(text=self.run_text)
        self.run_button.changed.connect(self._on_button)
        self.status = info_label()
        self._relay = _ProgressRelay()
        self._relay.progressed.connect(self._on_progress)
        self._cancel_event = threading.Event()
        self._worker: Any = None
        self._progress_bar: Any = None
        self._job: Job | None = None
        self._steps_done = 0
        self._closed = False
        self.native.destroyed.connect(self._on_destroyed)
        self._undock_watch = _UndockWatch(self.native, self._on_destroyed)

    # --- what subclasses provide -------------------------------------------------------------
    def prepare(self) -> Job:
        """Read the inputs (main thread) and return the job; raise an exception for bad input."""
        raise NotImplementedError

    # --- running -----------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """Whether a job is running."""
        return self._worker is not None

    @property
    def steps_done(self) -> int:
        """Steps the running (or last) job reported."""
        return self._steps_done

    def run(self) -> None:
        """Start the job (what the Run button does); a bad input becomes a notification."""
        if self.is_running:
            return
        try:
            job = self.prepare()
        except Exception as error:  # noqa: BLE001 - every input problem is reported the same way
            self._report_error(error)
            return
        self._start(job)

    def cancel(self) -> None:
        """Ask the running job to stop after its current step."""
        if self.is_running:
            self._cancel_event.set()
            self.run_button.text = "Cancelling…"
            self.run_button.enabled = False

    def _on_button(self, *_: Any) -> None:
        self.cancel() if self.is_running else self.run()

    def _start(self, job: Job) -> None:
        from napari.qt.threading import FunctionWorker
        from napari.utils import progress

        self._job = job
        self._cancel_event = threading.Event()
        self._steps_done = 0
        self._progress_bar = progress(total=max(1, job.total), desc=f"{self.title}: {job.description}")
        self.status.value = f"{job.description}…"
        worker = FunctionWorker(self._work, job)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._report_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.run_button.text = "Cancel"
        worker.start()

    def _work(self, job: Job) -> Any:
        """In the worker thread; a cancelled job returns ``None`` to :meth:`_on_returned`."""
        try:
            return job.work(self._relay.progressed.emit, self._cancel_event.is_set)
        except Cancelled:
            return None

    def _on_destroyed(self, *_: Any) -> None:
        """The dock widget was closed or removed (or the viewer): stop the job, touch no widget or layer afterwards."""
        self._closed = True
        self._cancel_event.set()

    def _on_progress(self, step: int, total: int, text: str) -> None:
        bar, job = self._progress_bar, self._job
        if bar is None or job is None or self._closed:
            return
        self._steps_done = step
        detail = f"{job.description}: {text}" if text else job.description
        self.status.value = f"{detail} (step {step}/{total})"
        bar.set_description(f"{self.title}: {detail}")
        if total != bar.total:
            bar.total = total
        bar.update(step - bar.n)  # last: napari may process pending events (even the job's end) here

    def _on_returned(self, result: Any) -> None:
        if self._closed:
            return
        if result is None or self._cancel_event.is_set():
            self.status.value = self.cancelled_text
            return
        try:
            self._job.finish(result)
        except Exception as error:  # noqa: BLE001
            self._report_error(error)

    def _on_finished(self) -> None:
        if self._progress_bar is not None:
            self._progress_bar.close()
        self._progress_bar = None
        self._worker = None
        self._job = None
        if not self._closed:
            self.run_button.text = self.run_text
            self.run_button.enabled = True

    def _report_error(self, error: BaseException) -> None:
        from napari.utils.notifications import show_error

        message = str(error) or type(error).__name__
        if not self._closed:
            self.status.value = f"Error: {message}"
        show_error(f"{self.title}: {message}")
