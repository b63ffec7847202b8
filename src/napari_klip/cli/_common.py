"""What several commands share: option groups, reading stacks, output checks, progress bars, result files.

Everything imported at module level here is torch-free (the command line starts without torch);
the detectors are imported inside the functions that run them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.options import (
    AGGREGATES,
    AUTO_BATCH,
    DEFAULT_KLIP_BATCH_IMAGES,
    DEFAULT_LMD_BATCH_SIZE,
    DEFAULT_THRESHOLD,
    DEVICE_CHOICES,
    DISTANCE_NAMES,
    GUIDANCE_MODES,
    INTENSITY_MODES,
    LIFTS,
    MASK_KINDS,
    OPERATOR_NAMES,
    PRECISIONS,
    TILINGS,
    KlipConfig,
    LmdConfig,
    OperatorSettings,
)


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number >= 1 (``--steps 0`` is a usage error naming the option)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value}")
    return value


def positive_minutes(text: str) -> float:
    """An ``argparse`` type: a finite number of minutes > 0 (``--time-limit 0`` is a usage error naming the option)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of minutes > 0, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number of minutes > 0, got {text}")
    return value


def batch_images_arg(text: str) -> int | str:
    """An ``argparse`` type: ``auto`` or a whole number >= 1 (anything else is a usage error naming the option)."""
    if text == AUTO_BATCH:
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 or '{AUTO_BATCH}', got {text!r}") from None


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cuda|mps|cpu`` and ``--precision auto|fp32|bf16``: where and how the network runs."""
    parser.add_argument("--device", choices=DEVICE_CHOICES, default=DEVICE_CHOICES[0])
    parser.add_argument("--precision", choices=PRECISIONS, default=PRECISIONS[0],
                        help="network precision: bf16 autocast or fp32; auto = bf16 only on hardware with bf16 "
                             "matrix units (a bf16 GPU, an AMX CPU), else fp32")


class IntensityRangeAction(argparse.Action):
    """``--intensity-range LOW HIGH``: two finite numbers with LOW < HIGH, else a usage error."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None) -> None:
        from ..core.intensity import check_intensity

        try:
            setattr(namespace, self.dest, check_intensity(values))
        except ValueError as error:
            raise argparse.ArgumentError(self, str(error)) from None


def add_intensity_options(parser: argparse.ArgumentParser) -> None:
    """``--intensity auto|none`` or ``--intensity-range LOW HIGH``: how inputs reach the prior's units."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--intensity", choices=INTENSITY_MODES, default=INTENSITY_MODES[0],
                       help="auto: map inputs clearly in other units (their 1st/99th percentiles to the prior's training "
                       "percentiles) and say so; none: take the input as it is (default auto; docs/intensities.md)")
    group.add_argument("--intensity-range", type=float, nargs=2, metavar=("LOW", "HIGH"), action=IntensityRangeAction,
                       help="the input values that map to the ends of the prior's intensity_range (finite, LOW < HIGH)")


def intensity_option(args: argparse.Namespace) -> str | tuple[float, float]:
    """The ``intensity`` argument of the API the options describe."""
    return args.intensity_range if getattr(args, "intensity_range", None) else args.intensity


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every scoring command has: prior, steps, seed, device, intensities, output."""
    parser.add_argument("--model", type=Path, help="prior folder (default: the bundled OrganAMNIST CT prior)")
    parser.add_argument("--steps", type=positive_int, default=KlipConfig.num_steps,
                        help=f"sampling steps, respaced over the prior's schedule (default {KlipConfig.num_steps})")
    parser.add_argument("--seed", type=int, default=0)
    add_device_option(parser)
    parser.add_argument("--batch-images", "--batch-size", dest="batch_images", type=batch_images_arg, metavar="N|auto",
                        help=f"images sampled together, one network call per step for all of them; 'auto' fits as many as a "
                        f"memory budget allows (default: {DEFAULT_KLIP_BATCH_IMAGES} for KLIP, {DEFAULT_LMD_BATCH_SIZE} for LMD; "
                        "--batch-size is the older name)")
    parser.add_argument("--channels-last", action="store_true",
                        help="run the network in channels_last memory layout (faster on some GPUs; slower on the CPUs measured "
                        "in docs/benchmarks.md)")
    parser.add_argument("--compile", action="store_true",
                        help="run the network through torch.compile: minutes to compile, then faster for long runs "
                        "(docs/benchmarks.md)")
    add_intensity_options(parser)
    parser.add_argument("--tiling", choices=TILINGS, default=TILINGS[0],
                        help="patch priors: cover the image at each step with non-overlapping patches on a grid shifted at "
                             "random per step (random-shift, PaDIS) or with half-overlapping tiles blended by a window "
                             f"(overlap, 4x the network calls). Default {TILINGS[0]}")
    parser.add_argument("--patch-batch", type=positive_int,
                        help="patch priors: patches per network call, the memory budget of a step (default: 262,144 pixels' worth, "
                             "256 patches of 32x32)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def add_klip_options(parser: argparse.ArgumentParser) -> None:
    """KLIP's options (shared by ``score`` and ``evaluate``): operator, sampler, maps."""
    ops, klip = OperatorSettings, KlipConfig
    parser.add_argument("--operator", choices=OPERATOR_NAMES, default=ops.name, help=f"forward model (default {ops.name})")
    parser.add_argument("--n-views", type=int, default=ops.n_views, help=f"ct: equally spaced angles over [0, 180) (default {ops.n_views})")
    parser.add_argument("--angles", type=float, nargs="+", help="ct: projection angles in degrees (overrides --n-views)")
    parser.add_argument("--kernel-size", type=int, default=ops.kernel_size, help=f"blur: kernel side (default {ops.kernel_size})")
    parser.add_argument("--sigma", type=float, default=ops.sigma, help=f"blur: Gaussian sigma in pixels (default {ops.sigma:g})")
    parser.add_argument("--factor", type=int, default=ops.factor, help=f"downsample: factor (default {ops.factor})")
    parser.add_argument("--mask", type=Path, help="inpaint: TIFF of known pixels (non-zero = known), prior-sized")
    parser.add_argument("--noise-sigma", type=float, default=0.0, help="simulated measurement noise (intensity units)")
    parser.add_argument("--samples", type=positive_int, default=klip.num_samples, help=f"posterior samples per image (default {klip.num_samples})")
    parser.add_argument("--zeta", type=float, default=klip.zeta, help=f"guidance step size zeta0 (default {klip.zeta:g})")
    parser.add_argument("--sigma-y", type=float, default=klip.sigma_y)
    parser.add_argument("--guidance", choices=GUIDANCE_MODES, default=klip.guidance,
                        help="guidance step: jacobian-free (the paper's DDPM sampler), dps (backpropagates through the "
                        "network), consistency (moves x0 by the operator's approximate inverse of the residual, e.g. "
                        f"filtered back-projection for ct; not for blur). Default {klip.guidance}")
    parser.add_argument("--consistency-weight", type=float, default=klip.consistency_weight,
                        help="consistency guidance: fraction of the residual's approximate inverse added to x0 "
                        f"(default {klip.consistency_weight:g})")
    parser.add_argument("--block-size", type=int, help="block side in input pixels, dividing both image sides (default: "
                        "~16x16 blocks); for a whole-image prior of another size the energy is resized to the input's grid first")
    parser.add_argument("--window", type=int, nargs=2, metavar=("START", "STOP"), help="step window (default: [65, 85) of 100, scaled)")
    parser.add_argument("--threshold", default=DEFAULT_THRESHOLD, help="label rule: median-multiple:K | percentile:P | value:V")


def add_lmd_options(parser: argparse.ArgumentParser) -> None:
    """LMD's own options (shared by ``lmd`` and ``evaluate --method lmd``)."""
    lmd = LmdConfig
    parser.add_argument("--reconstructions", type=positive_int, default=lmd.num_reconstructions,
                        help=f"LMD: reconstructions per image (default {lmd.num_reconstructions})")
    parser.add_argument("--mask-kind", choices=MASK_KINDS, default=lmd.mask, help=f"LMD: lift mask (default {lmd.mask})")
    parser.add_argument("--mask-grid", type=positive_int, default=lmd.mask_grid, help=f"LMD: patches per side of the mask (default {lmd.mask_grid})")
    parser.add_argument("--lift", choices=LIFTS, default=lmd.lift, help="LMD: mask+inpaint or diffuse+denoise")
    parser.add_argument("--diffuse-step", type=int, default=lmd.diffuse_step, help=f"LMD: start step of --lift diffuse (default {lmd.diffuse_step})")
    parser.add_argument("--distance", choices=DISTANCE_NAMES, default=lmd.distance, help=f"LMD: image distance (default {lmd.distance})")
    parser.add_argument("--aggregate", choices=AGGREGATES, default=lmd.aggregate, help=f"LMD: over reconstructions (default {lmd.aggregate})")
    parser.add_argument("--lpips-weights", help="LMD: ImageNet AlexNet weights for LPIPS (.npz or torchvision .pth)")


def klip_config(args: argparse.Namespace) -> KlipConfig:
    """The :class:`~napari_klip.core.options.KlipConfig` the options describe."""
    return KlipConfig(num_samples=args.samples, num_steps=args.steps, zeta=args.zeta, sigma_y=args.sigma_y, guidance=args.guidance,
                      consistency_weight=args.consistency_weight, seed=args.seed)


def lmd_config(args: argparse.Namespace) -> LmdConfig:
    """The :class:`~napari_klip.core.options.LmdConfig` the options describe."""
    return LmdConfig(
        num_reconstructions=args.reconstructions,
        num_steps=args.steps,
        mask=args.mask_kind,
        mask_grid=args.mask_grid,
        lift=args.lift,
        diffuse_step=args.diffuse_step,
        distance=args.distance,
        aggregate=args.aggregate,
        seed=args.seed,
    )


def klip_operator(args: argparse.Namespace, image_size: tuple[int, int]):
    """The forward operator the options describe, for images of ``image_size``."""
    from ..core.operators import build_operator

    name, params = operator_spec(args)
    return build_operator(name, image_size, params)


def operator_spec(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The forward operator's name and parameters the options describe (what ``build_operator`` takes)."""
    if args.operator == "ct":
        params: dict[str, Any] = {"angles": args.angles} if args.angles else {"n_views": args.n_views}
    elif args.operator == "blur":
        params = {"kernel_size": args.kernel_size, "sigma": args.sigma}
    elif args.operator == "downsample":
        params = {"factor": args.factor}
    elif args.operator == "inpaint":
        if args.mask is None:
            raise ValueError("--operator inpaint needs --mask (a TIFF of known pixels)")
        import tifffile

        params = {"mask": tifffile.imread(args.mask) != 0}
    else:
        params = {}
    return args.operator, params


def tiling_options(args: argparse.Namespace) -> dict[str, Any]:
    """``tiling`` and ``patch_batch``: how a patch prior runs on whole images."""
    return {"tiling": args.tiling, "patch_batch": args.patch_batch}


def working_grid_of(prior: Any, input_hw: tuple[int, ...]) -> tuple[int, int]:
    """The grid operators are built for: the input's ``(H, W)`` for a patch prior, else the prior's image size."""
    from ..core.patches import working_grid

    return working_grid(prior, tuple(input_hw[:2]))


def add_prior_z_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--prior-z`` (also the prior z-map of each image; ``what`` says what the command does with it) and its settings."""
    from ..core.prior_z import DEFAULT_Z_SMOOTHING, DEFAULT_Z_TIMESTEPS

    parser.add_argument("--prior-z", action="store_true",
                        help=f"also the prior z-map of the observed image, where it is unlike what the prior restores: {what} "
                             "(docs/klip.md; 112 more network passes per image)")
    parser.add_argument("--prior-z-smoothing", type=float, default=None, metavar="PX",
                        help=f"with --prior-z: Gaussian smoothing of the z-map in pixels of the prior's grid, 0 = none "
                             f"(default {DEFAULT_Z_SMOOTHING:g}, the validation winner; docs/benchmarks.md)")
    parser.add_argument("--prior-z-timesteps", type=int, nargs="+", default=None, metavar="T",
                        help="with --prior-z: the noise levels averaged (timesteps of the prior's schedule; default "
                             + " ".join(str(t) for t in DEFAULT_Z_TIMESTEPS) + ")")


def prior_z_settings(args: argparse.Namespace) -> Any:
    """The :class:`~napari_klip.core.prior_z.PriorZSettings` that ``--prior-z`` and its options ask for, or ``None``.

    Raises
    ------
    ValueError
        For ``--prior-z-smoothing`` / ``--prior-z-timesteps`` without ``--prior-z``, or a negative
        or non-finite smoothing (the timesteps are checked against the prior when it is loaded).
    """
    from dataclasses import replace

    from ..core.prior_z import PriorZSettings, check_smoothing

    smoothing, timesteps = getattr(args, "prior_z_smoothing", None), getattr(args, "prior_z_timesteps", None)
    if not getattr(args, "prior_z", False):
        if smoothing is not None or timesteps is not None:
            raise ValueError("--prior-z-smoothing and --prior-z-timesteps set the prior z-map: give --prior-z too")
        return None
    settings = PriorZSettings()
    if smoothing is not None:
        settings = replace(settings, smoothing=check_smoothing(smoothing))
    return settings if timesteps is None else replace(settings, timesteps=tuple(timesteps))


def map_options(args: argparse.Namespace) -> dict[str, Any]:
    """``block_size``, ``window`` and ``threshold`` of KLIP's maps (and ``prior_z`` when ``--prior-z`` asked for it)."""
    options = {"block_size": args.block_size, "window": tuple(args.window) if args.window else None, "threshold": args.threshold}
    settings = prior_z_settings(args)  # ``score`` and ``evaluate`` have the options
    if settings is not None:
        options["prior_z"] = settings
    return options


#: What each scoring command writes into ``--out`` (a command overwriting a folder removes the others' files).
SCORE_OUTPUTS = ("heatmap.tif", "labels.tif", "reconstruction.tif", "trace.npz", "prior_z.tif", "result.json")
LMD_OUTPUTS = ("heatmap.tif", "reconstructions.tif", "masks.tif", "result.json")
RESULT_OUTPUTS = tuple(dict.fromkeys(SCORE_OUTPUTS + LMD_OUTPUTS))


def staged_results(out: Path, names: tuple[str, ...], overwrite: bool):
    """Lock ``out``, check it before any work, and stage the outputs (see :func:`napari_klip.core.outputs.staged_output`).

    Files of the other scoring command are removed when the new ones land, so a folder never mixes
    a KLIP and an LMD run.
    """
    from ..core.outputs import staged_output

    stale = tuple(name for name in RESULT_OUTPUTS if name not in names)
    return staged_output(out, names, overwrite, stale=stale)


def check_out(out: Path, names: tuple[str, ...], overwrite: bool) -> None:
    """Refuse to replace earlier outputs without ``--overwrite`` (the folder is made only when writing)."""
    existing = [name for name in names if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"'{out}' already holds {', '.join(existing)}; pass --overwrite to replace them")


def read_stack(path: Path, what: str) -> np.ndarray:
    """A grey image or stack as ``(N, H, W)``; ``what`` names the option in errors."""
    from ..core.data import read_images

    stack = read_images(path, grey=True)
    if stack.ndim != 3:
        raise ValueError(f"{what} '{path}' must be grey images (H, W) or a stack (N, H, W); got shape {stack.shape}")
    return stack


def progress_bar(total: int, description: str, unit: str = "step"):
    """A tqdm bar over steps (or other ``unit``s; silent when not on a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit=unit, disable=None)


def follow(bar: Any):
    """A progress callback that moves ``bar`` to each update's ``step`` of ``total``."""

    def progress(update: Any) -> None:
        bar.total = update.total
        bar.update(update.step - bar.n)

    return progress


def klip_batch_images(args: argparse.Namespace) -> int | str:
    """``--batch-images`` for KLIP (its default when not given)."""
    return DEFAULT_KLIP_BATCH_IMAGES if args.batch_images is None else args.batch_images


def score_klip(stack: np.ndarray, args: argparse.Namespace, prior: Any, description: str, intensity: Any = None) -> list:
    """KLIP results of every image of ``stack`` (image ``i`` with seed ``seed + i``) behind one progress bar.

    ``intensity`` (a resolved mapping, e.g. one shared by several stacks) overrides the options'.
    """
    from ..api.klip import score_stack

    with progress_bar(len(stack) * args.steps, description) as bar:
        return score_stack(stack, prior, operator=klip_operator(args, working_grid_of(prior, stack.shape[1:])), noise_sigma=args.noise_sigma,
                           config=klip_config(args), batch_images=klip_batch_images(args), progress=follow(bar),
                           intensity=intensity or intensity_option(args), **map_options(args), **tiling_options(args))


def score_lmd(stack: np.ndarray, args: argparse.Namespace, prior: Any, description: str, intensity: Any = None) -> list:
    """LMD results of every image of ``stack`` behind one progress bar (``intensity`` as for :func:`score_klip`)."""
    from ..api.lmd import score_stack

    batch = DEFAULT_LMD_BATCH_SIZE if args.batch_images is None else args.batch_images
    with progress_bar(args.steps, description) as bar:  # the first update sets the total (batches × steps)
        return score_stack(stack, prior, config=lmd_config(args), lpips_weights=args.lpips_weights, batch_images=batch,
                           intensity=intensity or intensity_option(args), progress=follow(bar), **tiling_options(args))


def print_notes(parameters: dict[str, Any]) -> None:
    """Tell the user what happened to the input on its way to the prior (intensity mapping, resizing), one line each."""
    import sys

    for note in parameters.get("notes", []):
        print(f"napari-klip: note: {note}", file=sys.stderr)


def scoring_prior(args: argparse.Namespace) -> Any:
    """The prior of ``--model`` on ``--device``, at ``--precision``, with ``--channels-last`` and ``--compile`` if asked."""
    from ..core.prior import resolve_prior

    prior = resolve_prior(args.model, args.device).set_precision(args.precision).set_channels_last(args.channels_last)
    return prior.set_compile(args.compile) if args.compile else prior


def write_tiff(path: Path, array: np.ndarray) -> None:
    """Write a grey image or stack (never interpreted as RGB, whatever its shape)."""
    import tifffile

    tifffile.imwrite(path, array, photometric="minisblack")


def as_written(arrays: list[np.ndarray]) -> np.ndarray:
    """One image as it is, several as a stack."""
    return arrays[0] if len(arrays) == 1 else np.stack(arrays)


def write_result_json(out: Path, results: list, start: float, method: str, shown: Path | None = None, **specific: Any) -> None:
    """Write ``result.json`` (scores, method-specific fields, parameters, time) and say where outputs go (``shown``)."""
    summary = {
        "scores": [r.score for r in results],
        **specific,
        "parameters": results[0].parameters,
        "slices": len(results),
        "wall_time_s": round(time.perf_counter() - start, 2),
    }
    (out / "result.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print_notes(results[0].parameters)
    print(f"{method} scored {len(results)} image(s); max score {max(summary['scores']):.4g}; outputs in {shown or out}")
