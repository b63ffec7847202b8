"""Keep triton's LLVM from clashing with an LLVM that napari's OpenGL has already loaded."""

from __future__ import annotations

import sys


def avoid_triton_llvm_clash() -> bool:
    """Keep torch from importing triton when another LLVM is already loaded; return whether it did.

    napari's OpenGL canvas on Mesa (llvmpipe under Xvfb, and the Mesa drivers of many Linux
    desktops) loads ``libLLVM``; triton's extension module carries its own LLVM, and importing it
    afterwards crashes the whole process (a segmentation fault in triton's initialisers, seen with
    Mesa's libLLVM-15, triton 3.x, torch 2.14). diffusers imports ``torch._dynamo``, which imports
    triton when it is installed. napari-klip never compiles kernels, so when ``libLLVM`` is mapped
    and triton is not yet imported, triton is marked unavailable (``sys.modules["triton"] = None``):
    torch then runs as it does without triton, instead of crashing.
    """
    if "triton" in sys.modules or not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            llvm_loaded = any("libLLVM" in line for line in maps)
    except OSError:
        return False
    if llvm_loaded:
        sys.modules["triton"] = None  # type: ignore[assignment]
    return llvm_loaded
