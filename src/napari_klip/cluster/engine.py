"""Score a stack on a Dask cluster, streaming every finished image into a Zarr store.

The client (this process) reads the input a task at a time, keeps a bounded number of tasks in
flight (so a stack larger than memory never sits in it whole), and writes each result into the
store the moment it arrives, image data first and its ``done`` marker last. The workers need
nothing but napari-klip and the prior: images travel with the tasks and results come back, so
neither the input nor the output has to be on a filesystem the workers share.

A re-run with the same settings skips the images marked done; a worker that dies mid-task has
its task rescheduled by the Dask scheduler on another worker (Dask's ``allowed-failures`` limits
how often), and since only the client writes, an image is written once per result it receives.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..core.errors import Cancelled, DistributedRunError
from ..core.options import DEFAULT_DASK_TIMEOUT_S
from ..core.outputs import output_lock, remove_path, replace_tree
from ..core.progress import Progress, ProgressCallback, ShouldCancel
from .sources import ImageSource, chunks, import_optional, open_source
from .spec import RunSpec
from .store import FORMAT_VERSION, ResultStore
from .worker import check_spec, score_task

__all__ = ["RunSummary", "connect", "score_distributed"]


@dataclass(frozen=True)
class RunSummary:
    """What one call of :func:`score_distributed` did.

    Attributes
    ----------
    path : Path
        The result store.
    total : int
        Images in the stack.
    computed : int
        Images scored by this run.
    skipped : int
        Images already done by an earlier run (not scored again).
    wall_time_s : float
        Seconds from the first task submitted to the last result written.
    workers : int
        Workers the cluster had when the run started.
    """

    path: Path
    total: int
    computed: int
    skipped: int
    wall_time_s: float
    workers: int


@contextmanager
def connect(
    address: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    processes: bool = True,
    timeout: float = DEFAULT_DASK_TIMEOUT_S,
) -> Iterator[Any]:
    """A ``dask.distributed.Client`` of the scheduler at ``address``, or of a new ``LocalCluster``.

    Parameters
    ----------
    address : str, optional
        A scheduler address (``tcp://host:8786``) or a scheduler file (``*.json``); ``None``
        starts a ``LocalCluster`` on this machine, closed when the block ends.
    n_workers, threads_per_worker, processes
        The ``LocalCluster``'s workers (default: Dask's choice for this machine's cores), the
        tasks each runs at once, and whether they are processes (else threads of this one).
    timeout : float
        Seconds to wait for the scheduler at ``address``.

    Yields
    ------
    distributed.Client

    Raises
    ------
    MissingDependencyError
        If dask.distributed or zarr is not installed.
    DistributedRunError
        If the scheduler cannot be reached.
    """
    distributed = import_optional("distributed")
    import_optional("zarr")
    if address is None:
        cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=processes,
                                           dashboard_address=":0", worker_dashboard_address=":0")
        client = distributed.Client(cluster)
    else:
        cluster = None
        keyword = "scheduler_file" if str(address).endswith(".json") else "address"
        try:
            client = distributed.Client(**{keyword: address}, timeout=timeout)
        except (OSError, TimeoutError, ValueError) as error:
            raise DistributedRunError(f"cannot reach a Dask scheduler at '{address}' within {timeout:g} s: {error}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _input_record(source: ImageSource) -> dict[str, Any]:
    return {"source": source.name, "shape": list(source.shape), "dtype": str(source.dtype)}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    old = {key: value for key, value in old.items() if key != "format_version"}
    keys = sorted(set(old) | set(new))
    found = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += [f"{key}.{inner}" for inner in _differences(a, b)]
        elif a != b:
            found.append(key)
    return found


def _prepare_store(out: Path, spec: RunSpec, source: ImageSource, record: dict[str, Any], overwrite: bool) -> ResultStore:
    """Open the store at ``out`` to resume it, or make a new one (replacing an old store with ``overwrite``)."""
    existing = ResultStore.record_of(out) if out.exists() else None
    if existing is not None and not overwrite:
        differ = _differences(existing, record)
        if existing.get("format_version") != FORMAT_VERSION:
            differ.append("format_version")
        if differ:
            raise FileExistsError(f"'{out}' holds results made with other settings or input (differs in: {', '.join(differ)}); "
                                  "pass --overwrite to start again, or choose another --out")
        return ResultStore(out)
    if existing is None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"'{out}' exists and is not a result store of napari-klip --dask; choose another --out")
    staging = out.parent / f".{out.name}.partial"
    remove_path(staging)  # left by a killed run: we hold the lock
    try:
        ResultStore.create(staging, spec, len(source), source.image_shape, record)
        replace_tree(staging, out)
    finally:
        remove_path(staging)
    return ResultStore(out)


#: Images of the stack that resolve an intensity rule (``auto``) into one mapping: all of a stack
#: this size or smaller (then the mapping equals a serial run's), else this many evenly spaced.
INTENSITY_SAMPLE_IMAGES = 64


def intensity_sample(source: ImageSource, count: int = INTENSITY_SAMPLE_IMAGES) -> Any:
    """``(n, H, W)``: every image of ``source`` if it has at most ``count``, else ``count`` evenly spaced ones."""
    import numpy as np

    if len(source) <= count:
        return source.read(0, len(source))
    picks = np.linspace(0, len(source) - 1, count).round().astype(int)
    return np.concatenate([source.read(int(i), int(i) + 1) for i in picks])


def _check(client: Any, spec: RunSpec, source: ImageSource) -> dict[str, Any]:
    """Run :func:`~napari_klip.cluster.worker.check_spec` on a worker: bad settings fail before any output exists."""
    return client.submit(check_spec, spec, intensity_sample(source), pure=False, key=f"napari-klip-check-{uuid.uuid4().hex[:8]}").result()


def score_distributed(
    source: str | Path | Any,
    out: str | Path,
    spec: RunSpec,
    client: Any,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    should_cancel: ShouldCancel | None = None,
) -> RunSummary:
    """Score every image of ``source`` on the cluster of ``client``; results land in the Zarr store ``out``.

    Parameters
    ----------
    source : str, Path or array-like
        What ``--input`` takes (TIFF stack, folder, Zarr, ``.npz:KEY``) or an array-like
        (numpy, Zarr, dask); read a task at a time (see :mod:`napari_klip.cluster.sources`).
    out : str or Path
        The result store (layout in :mod:`napari_klip.cluster.store`); locked for the run.
    spec : RunSpec
        The detector and its settings.
    client : distributed.Client
        E.g. from :func:`connect`.
    overwrite : bool
        Start again: replace the store at ``out`` whatever it holds. Without it a store made with
        the same settings and input is resumed (its done images skipped), one made with others
        is an error.
    progress : callable, optional
        Called with a :class:`~napari_klip.core.progress.Progress` (images done of all) after every
        image written, and once at the start.
    should_cancel : callable, optional
        Polled after every result; returning true cancels the tasks in flight and raises
        :class:`~napari_klip.core.errors.Cancelled` (the images written so far stay done).

    Returns
    -------
    RunSummary

    Raises
    ------
    FileExistsError
        If ``out`` holds another run's store (without ``overwrite``) or something else.
    OutputLockedError
        If another run writes into ``out``.
    DistributedRunError
        If a task fails (the error names its images) or its images killed workers too often.
    Cancelled
        When ``should_cancel`` returned true.
    """
    distributed = import_optional("distributed")
    source = open_source(source)
    out = Path(out)
    with output_lock(out):
        facts = _check(client, spec, source)
        spec = replace(spec, intensity=facts["intensity"])  # one mapping for every task
        if facts["intensity"].warning:
            import warnings

            warnings.warn(facts["intensity"].warning, UserWarning, stacklevel=2)
        record = {"settings": spec.record(), "input": _input_record(source), "prior_image_size": facts["prior_image_size"]}
        store = _prepare_store(out, spec, source, record, overwrite)
        done = store.done()
        todo = [(a, b) for a, b in chunks(len(source), spec.images_per_task) if not done[a:b].all()]
        skipped = int(done.sum()) - sum(int(done[a:b].sum()) for a, b in todo)
        workers = len(client.nthreads())
        begin = time.perf_counter()
        computed = _run(distributed, client, spec, source, store, todo, skipped, progress, should_cancel)
        wall = time.perf_counter() - begin
        store.add_run({"computed": computed, "skipped": skipped, "workers": workers, "wall_time_s": round(wall, 3),
                       "images_per_s": round(computed / wall, 4) if computed and wall > 0 else None})
    return RunSummary(out, len(source), computed, skipped, wall, workers)


def _run(distributed: Any, client: Any, spec: RunSpec, source: ImageSource, store: ResultStore, todo: list[tuple[int, int]],
         skipped: int, progress: ProgressCallback | None, should_cancel: ShouldCancel | None) -> int:
    """Submit ``todo``'s tasks (a bounded number at a time), write each result as it arrives; images computed."""
    total, begin, tag = len(source), time.perf_counter(), uuid.uuid4().hex[:8]
    in_flight = max(4, 2 * sum(client.nthreads().values()))
    queue = list(reversed(todo))
    running: dict[Any, tuple[int, int]] = {}
    finished = distributed.as_completed()

    def submit() -> None:
        start, stop = queue.pop()
        future = client.submit(score_task, spec, start, source.read(start, stop), pure=False, key=f"napari-klip-{spec.method}-{tag}-{start}")
        running[future] = (start, stop)
        finished.add(future)

    def report(done: int) -> None:
        if progress is not None:
            progress(Progress(done, total, time.perf_counter() - begin))

    computed = 0
    report(skipped)
    try:
        while queue and len(running) < in_flight:
            submit()
        for future in finished:
            start, stop = running.pop(future)
            try:
                answer = future.result()
            except Exception as error:  # noqa: BLE001 - a task's failure becomes one error naming its images
                images = f"image {start}" if stop - start == 1 else f"images {start}-{stop - 1}"
                raise DistributedRunError(f"{images} of '{source.name}' failed: {type(error).__name__}: {error}") from error
            future.release()
            for offset, result in enumerate(answer["results"]):
                store.write(start + offset, result)
            computed += stop - start
            report(skipped + computed)
            if should_cancel is not None and should_cancel():
                raise Cancelled(f"cancelled after {computed} image(s); they are kept in '{store.path}'")
            if queue:
                submit()
    finally:
        if running:
            client.cancel(list(running))
    return computed
