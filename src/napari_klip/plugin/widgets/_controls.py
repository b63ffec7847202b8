"""Controls several widgets share: layer pickers, the prior chooser, device, seed, operator settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, SpinBox

from ...core.device import available_devices
from ...core.intensity import check_intensity
from ...core.options import DEVICE_CHOICES, INTENSITY_MODES, OPERATOR_LABELS, OperatorSettings
from ...core.prior import DEFAULT_PRIOR_NAME, resolve_prior

BUNDLED = "bundled default"
FOLDER = "folder"


def image_layer_choices(viewer: Any) -> Any:
    """A ``choices`` callable listing the viewer's image layers as ``(name, layer)``."""
    from napari.layers import Image

    def choices(_widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Image)]

    return choices


#: Characters of a layer name a dropdown makes room for; longer names are cut in the closed box.
LAYER_NAME_WIDTH = 16


def image_layer_box(viewer: Any, label: str = "input layer") -> ComboBox:
    """A dropdown of the viewer's image layers (refreshed when layers are added or removed).

    Its width does not follow the longest layer name, so a long name cannot widen the dock.
    """
    from qtpy.QtWidgets import QComboBox

    box = ComboBox(label=label, choices=image_layer_choices(viewer), nullable=False)
    box.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.native.setMinimumContentsLength(LAYER_NAME_WIDTH)
    return box


def device_box() -> ComboBox:
    """``auto`` and the torch devices this machine has (``cuda`` only where available)."""
    auto = DEVICE_CHOICES[0]
    return ComboBox(label="device", choices=[auto, *available_devices()], value=auto)


def seed_box(value: int = 0) -> SpinBox:
    """The seed of everything random in a run (slice ``i`` of a stack uses ``seed + i``)."""
    return SpinBox(label="seed", value=value, min=0, max=2**31 - 1)


#: The intensity control's third choice: an explicit input range (the CLI's ``--intensity-range``).
RANGE = "range"


class IntensityControls(Container):
    """How the input's intensities reach the prior's units: ``auto``, ``none`` or an explicit range.

    The rule is :mod:`napari_klip.core.intensity`'s (``docs/intensities.md``); for ``range`` the
    input values ``low`` and ``high`` map to the ends of the prior's intensity range.
    """

    def __init__(self) -> None:
        self.mode = ComboBox(
            label="intensity", choices=[*INTENSITY_MODES, RANGE], value=INTENSITY_MODES[0],
            tooltip="auto: map inputs clearly in other units (1st/99th percentiles to the prior's training percentiles); "
                    "none: take the input as it is; range: the input values below map to the prior's range",
        )
        self.low = FloatSpinBox(label="input low", value=0.0, min=-1e12, max=1e12, step=1.0, visible=False)
        self.high = FloatSpinBox(label="input high", value=255.0, min=-1e12, max=1e12, step=1.0, visible=False)
        super().__init__(widgets=[self.mode, self.low, self.high], labels=True)
        self.margins = (0, 0, 0, 0)
        self.mode.changed.connect(self._on_mode)

    def _on_mode(self, value: str) -> None:
        self.low.visible = self.high.visible = value == RANGE

    def choice(self) -> str | tuple[float, float]:
        """``"auto"``, ``"none"`` or ``(low, high)``; ``ValueError`` unless low < high."""
        if self.mode.value == RANGE:
            return check_intensity((self.low.value, self.high.value))
        return check_intensity(self.mode.value)


class PriorControls(Container):
    """Choose the diffusion prior: the one bundled with the package, or a prior folder.

    The loaded prior is kept, so a second run with the same prior and device does not load it again
    (unless the folder's files changed, e.g. by training more).
    """

    def __init__(self) -> None:
        self.source = ComboBox(label="prior", choices=[BUNDLED, FOLDER], value=BUNDLED, tooltip=f"bundled: {DEFAULT_PRIOR_NAME}")
        self.folder = FileEdit(label="prior folder", mode="d", visible=False)
        super().__init__(widgets=[self.source, self.folder], labels=True)
        self.margins = (0, 0, 0, 0)
        self.source.changed.connect(self._on_source)
        self._loaded: dict[tuple[str, str, int], Any] = {}

    def _on_source(self, value: str) -> None:
        self.folder.visible = value == FOLDER

    def path(self) -> Path | None:
        """The chosen prior folder, ``None`` for the bundled prior; raises for a missing folder."""
        if self.source.value == BUNDLED:
            return None
        folder = Path(self.folder.value).expanduser()
        if str(self.folder.value) in ("", ".") or not folder.is_dir():
            raise ValueError(f"choose an existing prior folder (got '{self.folder.value}')")
        return folder

    def load(self, path: Path | None, device: str) -> Any:
        """The prior, loaded again only when its folder's files changed; safe in the worker thread."""
        folder_files = [] if path is None else [f for f in path.rglob("*") if f.is_file()]
        key = (str(path), device, max((f.stat().st_mtime_ns for f in folder_files), default=0))
        if key not in self._loaded:
            self._loaded = {key: resolve_prior(path, device)}  # keep only the latest
        return self._loaded[key]


class OperatorControls(Container):
    """The forward operator and its parameters (only the chosen operator's are shown)."""

    def __init__(self) -> None:
        defaults = OperatorSettings()
        self.operator = ComboBox(label="operator", choices=[(label, name) for name, label in OPERATOR_LABELS.items()], value=defaults.name)
        self.n_views = SpinBox(label="views", value=defaults.n_views, min=1, max=720, tooltip="equally spaced angles over [0°, 180°)")
        self.kernel_size = SpinBox(label="kernel size", value=defaults.kernel_size, min=1, max=99, step=2)
        self.sigma = FloatSpinBox(label="blur sigma", value=defaults.sigma, min=0.1, max=50.0, step=0.5)
        self.factor = SpinBox(label="factor", value=defaults.factor, min=1, max=16, tooltip="must divide the grid size")
        self.known_fraction = FloatSpinBox(label="known fraction", value=defaults.known_fraction, min=0.01, max=1.0, step=0.05)
        self.mask_seed = SpinBox(label="mask seed", value=defaults.mask_seed, min=0, max=2**31 - 1)
        self._by_operator = {
            "ct": [self.n_views],
            "blur": [self.kernel_size, self.sigma],
            "downsample": [self.factor],
            "inpaint": [self.known_fraction, self.mask_seed],
            "denoise": [],
        }
        super().__init__(
            widgets=[self.operator, self.n_views, self.kernel_size, self.sigma, self.factor, self.known_fraction, self.mask_seed],
            labels=True,
        )
        self.margins = (0, 0, 0, 0)
        self.operator.changed.connect(self._show_parameters)
        self._show_parameters(self.operator.value)

    def _show_parameters(self, name: str) -> None:
        for operator, widgets in self._by_operator.items():
            for widget in widgets:
                widget.visible = operator == name

    def settings(self) -> OperatorSettings:
        """The chosen operator settings."""
        return OperatorSettings(
            name=self.operator.value,
            n_views=self.n_views.value,
            kernel_size=self.kernel_size.value,
            sigma=self.sigma.value,
            factor=self.factor.value,
            known_fraction=self.known_fraction.value,
            mask_seed=self.mask_seed.value,
        )


def info_label() -> Label:
    """A word-wrapping label for explanations and results."""
    label = Label(value="")
    label.native.setWordWrap(True)
    return label
