"""napari-klip: out-of-distribution detection and localization with diffusion priors.

Importing this package is cheap: it does not import torch, diffusers, Qt or napari.
Heavy modules are imported inside the functions that need them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-klip")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
