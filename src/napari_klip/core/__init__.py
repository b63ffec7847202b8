"""Computational core of napari-klip: numpy and torch (and diffusers) only, never Qt or napari.

Imports nothing from :mod:`napari_klip.api`, :mod:`napari_klip.cli` or :mod:`napari_klip.plugin`
(``tests/test_architecture.py``). Importing this package loads no torch.

Submodules
----------
options
    Every vocabulary and default (guidance modes, operators, devices, LMD choices, ...) and the
    settings records ``KlipConfig``, ``LmdConfig``, ``OperatorSettings``; torch-free.
errors
    ``NapariKlipError``, the base of the project's errors, and ``Cancelled``.
progress
    ``Progress`` and ``drive`` (runs a generator; cancelling raises ``Cancelled``).
diffusion
    Respacing, ``ᾱ`` bookkeeping and the DDPM reverse step shared by every sampler.
grid
    Input checks and resizing to and from the prior's grid.
device
    Pick the torch device (``auto``, ``cuda``, ``mps``, ``cpu``).
operators
    Forward models of imaging inverse problems with their adjoints; ``adjointness_error``.
prior
    Diffusion priors: a diffusers ``UNet2DModel`` plus a DDPM noise schedule, saved as a folder;
    ``resolve_prior`` and the bundled default.
training, sampling
    Train a prior on a user's in-distribution images; draw from it.
klip, lmd
    The two detectors.
data, anomalies, samples, metrics
    Image stacks, synthetic anomalies, the bundled sample data, ROC-AUC.
"""
