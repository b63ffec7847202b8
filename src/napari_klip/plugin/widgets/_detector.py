"""What the KLIP and LMD detector widgets share: the prior, intensities, the device, the score line, notes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._controls import IntensityControls, PriorControls, device_box, info_label
from ._layer_task import LayerInput, LayerTaskWidget


def describe_scores(scores: list[float | None]) -> str:
    """``"score 3.21"`` for one image; per-slice scores and the maximum for a stack."""
    computed = [(index, score) for index, score in enumerate(scores) if score is not None]
    if len(scores) == 1:
        return f"score {computed[0][1]:.4g}"
    best_index, best = max(computed, key=lambda item: item[1])
    listed = ", ".join("–" if score is None else f"{score:.3g}" for score in scores[:12])
    more = ", …" if len(scores) > 12 else ""
    return f"scores per slice: {listed}{more}; max {best:.4g} (slice {best_index})"


class DetectorWidget(LayerTaskWidget):
    """A detector over the slices of an image layer with a diffusion prior."""

    def __init__(self, napari_viewer: Any, title: str):
        super().__init__(napari_viewer, title)
        self.prior = PriorControls()
        self.intensity = IntensityControls()
        self.device = device_box()
        self.score = info_label()

    def add_footer(self, *widgets: Any) -> None:
        """Prior, intensity, seed, ``widgets``, device, slices, Run, status and the score line."""
        self.append(self.prior)
        self.append(self.intensity)
        super().add_footer(*widgets, self.device)
        self.append(self.score)

    def prior_choice(self) -> tuple[Path | None, str]:
        """The prior folder (``None`` = bundled) and device, read on the main thread (raises for a missing folder)."""
        return self.prior.path(), self.device.value

    def load_prior(self, choice: tuple[Path | None, str], source: LayerInput) -> Any:
        """Load the chosen prior (worker thread) and check the input's colour against it."""
        prior = self.prior.load(*choice)
        if source.rgb and prior.channels == 1:
            raise ValueError(f"'{source.name}' is an RGB layer but the prior is grey (1 channel); convert the layer to grey or choose an RGB prior")
        if not source.rgb and prior.channels > 1:
            raise ValueError(f"'{source.name}' is grey but the prior expects {prior.channels}-channel (RGB) images")
        return prior

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
        """Write the stored results' scores into the score line."""
        scores = [None if r is None else float(r.score) for r in self.results.results]
        self.score.value = describe_scores(scores)
