"""What the KLIP and LMD detector widgets share: the prior, intensities, the device, the score line, per-slice settings, notes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.prior_quality import broken_weights_problem
from ._controls import IntensityControls, PriorControls, device_box, info_label
from ._layer_task import LayerInput, LayerTaskWidget

#: Slices the score line lists at most (the slices of the last run first, then the best).
LISTED_SLICES = 12


def describe_slices(indices: list[int]) -> str:
    """``"slice 3"`` or ``"slices 0, 2, 5"`` (the first 12, then ``…``)."""
    listed = ", ".join(str(i) for i in indices[:LISTED_SLICES]) + (", …" if len(indices) > LISTED_SLICES else "")
    return f"slice {listed}" if len(indices) == 1 else f"slices {listed}"


def describe_scores(scores: list[float | None], latest: list[int] | tuple[int, ...] = ()) -> str:
    """``"score 3.21"`` for one image; for a stack, the scored slices as ``index: score`` and the maximum.

    The slices of the last run (``latest``, flat indices) are always listed, marked ``*`` when
    other slices were scored before; then the best slice, then the others in order, at most
    :data:`LISTED_SLICES` entries.
    """
    computed = [(index, score) for index, score in enumerate(scores) if score is not None]
    if len(scores) == 1:
        return f"score {computed[0][1]:.4g}"
    latest_set = set(latest)
    best_index, best = max(computed, key=lambda item: item[1])
    priority = sorted(computed, key=lambda item: (item[0] not in latest_set, item[0] != best_index, item[0]))
    shown = sorted(priority[:LISTED_SLICES])
    marked = bool(latest_set) and len(latest_set) < len(computed)
    listed = ", ".join(f"{index}: {score:.3g}{'*' if marked and index in latest_set else ''}" for index, score in shown)
    more = f", … ({len(computed) - len(shown)} more)" if len(shown) < len(computed) else ""
    note = "; * = last run" if marked else ""
    return f"scores per slice ({len(computed)} of {len(scores)} scored): {listed}{more}; max {best:.4g} (slice {best_index}){note}"


class DetectorWidget(LayerTaskWidget):
    """A detector over the slices of an image layer with a diffusion prior.

    Every stored slice keeps the settings it was computed with (:meth:`slice_settings`): a run
    only replaces the slices it scores, and the score and status lines say which slices hold
    other settings.
    """

    def __init__(self, napari_viewer: Any, title: str):
        super().__init__(napari_viewer, title)
        self.prior = PriorControls()
        self.intensity = IntensityControls()
        self.device = device_box()
        self.score = info_label()

    def add_footer(self, *widgets: Any) -> None:
        """Prior, intensity, seed, ``widgets``, device, slices; Run, status and the score line below the form."""
        self.form.append(self.prior)
        self.form.append(self.intensity)
        super().add_footer(*widgets, self.device)
        self.append(self.score)

    def prior_choice(self) -> tuple[Path | None, str]:
        """The prior folder (``None`` = bundled) and device, read on the main thread (raises for a missing folder)."""
        return self.prior.path(), self.device.value

    def load_prior(self, choice: tuple[Path | None, str], source: LayerInput) -> Any:
        """Load the chosen prior (worker thread), refuse broken weights, check the input's colour against it."""
        prior = self.prior.load(*choice)
        problem = broken_weights_problem(prior)
        if problem is not None:
            raise ValueError(problem)
        if source.rgb and prior.channels == 1:
            raise ValueError(f"'{source.name}' is an RGB layer but the prior is grey (1 channel); convert the layer to grey or choose an RGB prior")
        if not source.rgb and prior.channels > 1:
            raise ValueError(f"'{source.name}' is grey but the prior expects {prior.channels}-channel (RGB) images")
        return prior

    @staticmethod
    def slice_settings(result: Any) -> Any:
        """What a slice's result was computed with, except its seed (subclasses; equal = same settings)."""
        raise NotImplementedError

    def same_settings_as_latest(self) -> list[int]:
        """Flat indices of the stored slices computed with the settings of the last run's slices."""
        results = self.results.results
        if not self.latest or results[self.latest[0]] is None:
            return []
        reference = self.slice_settings(results[self.latest[0]])
        return [i for i in self.results.computed_indices() if self.slice_settings(results[i]) == reference]

    def settings_note(self) -> str:
        """`` " Slices 0, 3 keep the settings they were scored with."`` when stored slices differ from the last run's."""
        same = set(self.same_settings_as_latest())
        others = [i for i in self.results.computed_indices() if i not in same]
        if not others:
            return ""
        verb = "keeps the settings it was" if len(others) == 1 else "keep the settings they were"
        return f" {describe_slices(others).capitalize()} {verb} scored with."

    def resolve_intensity(self, prior: Any, slices: list[Any], choice: Any) -> Any:
        """One intensity mapping over all ``slices`` for ``choice`` (read by :meth:`IntensityControls.choice` on the
        main thread); in the worker thread, so its warning is kept for :meth:`notify_notes`."""
        import warnings

        import numpy as np

        from ...core.intensity import resolve_intensity

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # shown as a notification by notify_notes
            return resolve_intensity(np.stack(slices), prior.metadata, choice)

    def notify_notes(self, results: list[Any]) -> list[str]:
        """Notifications of what happened on the way to the prior (intensity mapping, resizing, the range warning).

        Returns the messages (also for tests).
        """
        from napari.utils.notifications import show_info, show_warning

        parameters = results[0].parameters
        notes = [f"{self.title}: {note}" for note in parameters.get("notes", [])]
        warning = parameters.get("intensity", {}).get("warning")
        for note in notes:
            show_info(note)
        if warning:
            show_warning(f"{self.title}: {warning}")
        return notes + ([f"{self.title}: {warning}"] if warning else [])

    def show_scores(self) -> None:
        """Write the stored results' scores into the score line (the last run's slices always listed)."""
        scores = [None if r is None else float(r.score) for r in self.results.results]
        self.score.value = describe_scores(scores, self.latest)
