"""The napari dock widgets (Qt): one module per widget, the shared run/cancel/progress logic in ``_task``.

Imported only when napari opens a widget; nothing else in napari-klip imports this package.
Importing it first makes sure torch will not import triton into a process where napari's OpenGL
has loaded another LLVM (see :func:`napari_klip.core._llvm.avoid_triton_llvm_clash`).
"""

from ...core._llvm import avoid_triton_llvm_clash

avoid_triton_llvm_clash()
