"""Device selection."""

from __future__ import annotations

import pytest
import torch

from napari_klip.core.device import DeviceUnavailableError, available_devices, resolve_device


def test_auto_picks_an_available_device():
    assert resolve_device("auto").type == available_devices()[0]
    assert resolve_device(None).type == available_devices()[0]


def test_cpu_always_available():
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_missing_cuda_is_a_clear_error():
    with pytest.raises(DeviceUnavailableError, match="'cuda' was requested but is not available.*available: .*cpu"):
        resolve_device("cuda")


def test_unknown_device_name():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
