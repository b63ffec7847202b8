"""Computational core of napari-klip: numpy and torch only, never Qt or napari.

Submodules
----------
device
    Pick the torch device (``auto``, ``cuda``, ``mps``, ``cpu``).
operators
    Forward models of imaging inverse problems with their adjoints.
prior
    Diffusion priors: a diffusers ``UNet2DModel`` plus a DDPM noise schedule, saved as a folder.
training
    Train a prior on a user's in-distribution images.
data
    Read image stacks (TIFF, PNG folders, NPZ) and map intensities to the network range.
anomalies
    Synthetic lesions and star artefacts with pixel masks, for evaluation and demos.
"""
