"""Dock widget: train a diffusion prior on image layers or a folder of images."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, Select, SpinBox

from ...core.data import read_images
from ...core.networks import NETWORK_PRESETS
from ...core.options import LOSS_WEIGHTINGS, PRECISIONS, PREDICTION_TYPES, TIMESTEP_SAMPLINGS
from ...core.progress import drive
from ...core.training import TrainingConfig, iter_training, staging_folder
from ._controls import device_box, image_layer_choices, seed_box
from ._task import Job, TaskWidget

LAYERS = "image layers"
FOLDER = "folder"


def stack_layers(layers: list[Any]) -> np.ndarray:
    """All slices of the given image layers as one ``(N, H, W)`` (or ``(N, H, W, C)``) stack.

    Raises
    ------
    ValueError
        Without layers, or when their slices differ in size or colour.
    """
    if not layers:
        raise ValueError("choose at least one image layer to train on")
    stacks = []
    for layer in layers:
        data = np.asarray(layer.data)
        image_axes = 3 if getattr(layer, "rgb", False) else 2
        stacks.append(data.reshape(-1, *data.shape[data.ndim - image_axes :]))
    shapes = {stack.shape[1:] for stack in stacks}
    if len(shapes) > 1:
        raise ValueError(f"the chosen layers' slices differ in shape ({', '.join(map(str, sorted(shapes)))}); train on layers of one size")
    return np.concatenate(stacks).copy()


class TrainPriorWidget(TaskWidget):
    """Train a prior with :func:`napari_klip.core.training.iter_training`, showing the loss.

    Cancelling saves a checkpoint; tick *resume* to continue from it. With *overwrite* the run
    trains beside the prior folder (in ``<folder>.new``, the core's staged overwrite, as the CLI
    does) and replaces the earlier prior only when it finishes: a cancelled or failed run leaves
    the earlier prior as it was.
    """

    run_text = "Train"
    cancelled_text = "Cancelled: a checkpoint was saved in the prior folder; tick resume to continue from it."

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer, "Train prior")
        defaults = TrainingConfig()
        self.source = ComboBox(label="train on", choices=[LAYERS, FOLDER], value=LAYERS)
        self.layers = Select(label="image layers", choices=image_layer_choices(napari_viewer))
        self.folder = FileEdit(label="image folder", mode="d", visible=False)
        self.output = FileEdit(label="prior folder", mode="d", tooltip="where the prior is written")
        self.image_size = SpinBox(label="image size", value=defaults.image_size, min=8, max=512, step=8)
        self.patch_size = SpinBox(
            label="patch size", value=0, min=0, max=512, step=8,
            tooltip="0: a whole-image prior (images resized to 'image size'). P > 0: a patch prior trained on random P×P crops "
                    "of the full-size images, which KLIP and LMD run on whole images at their native size",
        )
        self.network = ComboBox(label="network", choices=list(NETWORK_PRESETS), value="tiny")
        self.steps = SpinBox(label="steps", value=3000, min=1, max=10_000_000)
        self.batch_size = SpinBox(label="batch size", value=defaults.batch_size, min=1, max=4096)
        self.learning_rate = FloatSpinBox(label="learning rate", value=defaults.learning_rate, min=1e-7, max=1.0, step=1e-4)
        self.prediction_type = ComboBox(
            label="predicts", choices=list(PREDICTION_TYPES), value=defaults.prediction_type,
            tooltip="what the network learns to predict: the noise (DDPM), the velocity v, or the clean image; "
                    "the detectors convert it to the noise",
        )
        self.loss_weighting = ComboBox(
            label="loss weighting", choices=list(LOSS_WEIGHTINGS), value=defaults.loss_weighting,
            tooltip="weight of each timestep in the loss: equal, or Min-SNR-gamma (Hang et al. 2023)",
        )
        self.min_snr_gamma = FloatSpinBox(
            label="Min-SNR gamma", value=defaults.min_snr_gamma, min=0.1, max=1000.0, step=0.5,
            enabled=defaults.loss_weighting == "min-snr",
            tooltip="the SNR at which Min-SNR weighting caps a timestep's weight (with loss weighting min-snr)",
        )
        self.loss_weighting.changed.connect(lambda value: setattr(self.min_snr_gamma, "enabled", value == "min-snr"))
        self.timestep_sampling = ComboBox(
            label="noise levels", choices=list(TIMESTEP_SAMPLINGS), value=defaults.timestep_sampling,
            tooltip="which noise levels training sees: uniform over the schedule (DDPM), or EDM's log-normal levels, "
                    "mostly low and middle noise (with 'predicts' v_prediction: EDM's preconditioning at sigma_data 1)",
        )
        self.ema_decay = FloatSpinBox(
            label="EMA decay", value=defaults.ema_decay, min=0.0, max=0.9999, step=0.0001,
            tooltip="the saved weights are an exponential moving average of the training weights with this decay; 0 = the last weights",
        )
        self.precision = ComboBox(
            label="precision", choices=list(PRECISIONS), value=defaults.precision,
            tooltip="auto: bf16 autocast where the hardware has bf16 matrix units (a bf16 GPU, an AMX CPU), else fp32; "
                    "the weights stay fp32 (docs/benchmarks.md: bf16 is slower on CPUs without AMX)",
        )
        self.resume = CheckBox(text="resume from the folder's checkpoint", value=False)
        self.overwrite = CheckBox(text="overwrite earlier training output", value=False)
        self.seed = seed_box()
        self.device = device_box()
        self.form.extend(
            [self.source, self.layers, self.folder, self.output, self.image_size, self.patch_size, self.network, self.steps, self.batch_size,
             self.learning_rate, self.prediction_type, self.loss_weighting, self.min_snr_gamma, self.timestep_sampling, self.ema_decay,
             self.precision, self.seed, self.device, self.resume, self.overwrite]
        )
        self.extend([self.run_button, self.status])
        self.source.changed.connect(self._on_source)

    def _on_source(self, value: str) -> None:
        self.layers.visible = value == LAYERS
        self.folder.visible = value == FOLDER

    def _images(self) -> tuple[np.ndarray, str]:
        if self.source.value == LAYERS:
            layers = list(self.layers.value)
            return stack_layers(layers), "napari layers: " + ", ".join(layer.name for layer in layers)
        folder = Path(self.folder.value).expanduser()
        if str(self.folder.value) in ("", ".") or not folder.is_dir():
            raise ValueError(f"choose an existing folder of TIFF/PNG images (got '{self.folder.value}')")
        return read_images(folder), str(folder)

    def prepare(self) -> Job:
        images, description = self._images()
        if str(self.output.value) in ("", "."):
            raise ValueError("choose the folder the prior is written to")
        config = TrainingConfig(
            image_size=self.image_size.value,
            network=self.network.value,
            steps=self.steps.value,
            batch_size=self.batch_size.value,
            learning_rate=self.learning_rate.value,
            seed=self.seed.value,
            device=self.device.value,
            checkpoint_every=max(1, self.steps.value // 10),
            training_data=description,
            patch_size=self.patch_size.value or None,
            prediction_type=self.prediction_type.value,
            loss_weighting=self.loss_weighting.value,
            timestep_sampling=self.timestep_sampling.value,
            min_snr_gamma=float(self.min_snr_gamma.value),
            ema_decay=float(self.ema_decay.value),
            precision=self.precision.value,
        )
        config.validate()
        out_dir = Path(self.output.value).expanduser()
        self.cancelled_text = (
            f"Cancelled: the new training's checkpoint is in '{staging_folder(out_dir)}'; the prior in '{out_dir}' is unchanged. "
            "Tick resume to continue the new training."
            if self.overwrite.value
            else type(self).cancelled_text
        )
        return Job(
            work=partial(self._train, images, out_dir, config, self.resume.value, self.overwrite.value),
            finish=self._show,
            total=config.steps,
            description=f"training on {len(images)} images",
        )

    @staticmethod
    def _train(images: np.ndarray, out_dir: Path, config: Any, resume: bool, overwrite: bool, report: Any, should_cancel: Any) -> Any:
        """In the worker thread; closing the generator on cancel saves a checkpoint."""
        steps = iter_training(images, out_dir, config, resume=resume, overwrite=overwrite)
        return drive(steps, lambda update: report(update.step, update.total, f"loss {update.loss:.4f}"), should_cancel)

    def _show(self, result: Any) -> None:
        from napari.utils.notifications import show_info

        message = f"Prior saved to '{result.out_dir}': {result.steps_done} steps, final loss {result.final_loss:.4f}, {result.wall_time_s:.0f} s."
        self.status.value = message
        show_info(message)
