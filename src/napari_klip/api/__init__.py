"""Plain functions over numpy arrays: KLIP and LMD, measurements, and results as napari layers.

The API layer sits on :mod:`napari_klip.core` and imports nothing from the command line or the
napari plugin. Its modules have one shape per detector:

* :mod:`napari_klip.api.klip` — ``score_image``, ``score_stack`` (and ``score_measurement(s)``
  for given measurements) → :class:`KlipResult`;
* :mod:`napari_klip.api.lmd` — ``score_image``, ``score_stack`` → :class:`LmdResult`;
* :mod:`napari_klip.api.measurements` — simulated measurements that remember their operator;
* :mod:`napari_klip.api.layers` — results as napari layer data tuples, ``add_to_viewer``.

Images and the prior come first, options are keyword-only. The names below load on first use
(``score_image`` imports torch; ``layers`` and ``measurements`` do not).

Example
-------
>>> from napari_klip.api import score_image, lmd_score                  # doctest: +SKIP
>>> klip = score_image(ct_slice, operator="ct", operator_params={"n_views": 24})
>>> lmd = lmd_score(digit, "priors/mnist32-tiny-cpu", config=LmdConfig(distance="mse"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..core.operators import build_operator
    from ..core.options import DEFAULT_THRESHOLD
    from ..core.prior import DEFAULT_PRIOR_NAME, default_prior_path, resolve_prior
    from . import klip, lmd
    from .klip import KlipResult, score_image, score_measurement, score_measurements, score_stack
    from .layers import add_layer_data, add_to_viewer, klip_layer_data, layer_data, lmd_layer_data, measurement_layer_data
    from .lmd import LmdResult
    from .lmd import score_image as lmd_score
    from .lmd import score_stack as lmd_score_stack

#: Where each name of this package lives, as ``(module, attribute)``; loaded on first use, so that
#: ``napari_klip.api.layers`` and ``napari_klip.api.measurements`` import without torch.
_EXPORTS = {
    "DEFAULT_PRIOR_NAME": ("..core.prior", "DEFAULT_PRIOR_NAME"),
    "DEFAULT_THRESHOLD": ("..core.options", "DEFAULT_THRESHOLD"),
    "KlipResult": (".klip", "KlipResult"),
    "LmdResult": (".lmd", "LmdResult"),
    "add_layer_data": (".layers", "add_layer_data"),
    "add_to_viewer": (".layers", "add_to_viewer"),
    "build_operator": ("..core.operators", "build_operator"),
    "default_prior_path": ("..core.prior", "default_prior_path"),
    "klip": (".klip", None),
    "klip_layer_data": (".layers", "klip_layer_data"),
    "layer_data": (".layers", "layer_data"),
    "lmd": (".lmd", None),
    "lmd_layer_data": (".layers", "lmd_layer_data"),
    "lmd_score": (".lmd", "score_image"),
    "lmd_score_stack": (".lmd", "score_stack"),
    "measurement_layer_data": (".layers", "measurement_layer_data"),
    "resolve_prior": ("..core.prior", "resolve_prior"),
    "score_image": (".klip", "score_image"),
    "score_measurement": (".klip", "score_measurement"),
    "score_measurements": (".klip", "score_measurements"),
    "score_stack": (".klip", "score_stack"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = importlib.import_module(module, __name__)
    value = value if attribute is None else getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "DEFAULT_PRIOR_NAME",
    "DEFAULT_THRESHOLD",
    "KlipResult",
    "LmdResult",
    "add_layer_data",
    "add_to_viewer",
    "build_operator",
    "default_prior_path",
    "klip",
    "klip_layer_data",
    "layer_data",
    "lmd",
    "lmd_layer_data",
    "lmd_score",
    "lmd_score_stack",
    "measurement_layer_data",
    "resolve_prior",
    "score_image",
    "score_measurement",
    "score_measurements",
    "score_stack",
]
