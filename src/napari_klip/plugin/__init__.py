"""The napari plugin: dock widgets, sample data and the demo viewer (napari and Qt only here).

Named in ``napari.yaml`` (the npe2 manifest); nothing in :mod:`napari_klip.core` or
:mod:`napari_klip.api` imports this package. Result layers are built by
:mod:`napari_klip.api.layers`, which needs no Qt.
"""
