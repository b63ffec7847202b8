"""Tests of the LMD image distances (LPIPS, MSE, SSIM, prior features)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_klip.core.lmd import lpips_distance
from conftest import shared_file
from skimage.metrics import structural_similarity
from skimage.transform import resize

from napari_klip.core.lmd.distances import (
    ALEXNET_FEATURE_SHAPES,
    ALEXNET_WEIGHTS_ENV,
    DISTANCES,
    LPIPS_RANDOM_BACKBONE_NAME,
    TORCHVISION_ALEXNET_FILE,
    DistanceResult,
    LpipsDistance,
    LpipsWeightsError,
    LpipsWeightsFormatError,
    MseDistance,
    PriorFeatureDistance,
    SsimDistance,
    find_alexnet_weights,
    load_lpips,
    make_distance,
    read_alexnet_features,
)
from napari_klip.core.prior import create_prior

ALEXNET_NPZ = "weights/alexnet_features_imagenet.npz"


# --- helpers and fixtures -----------------------------------------------------------------


def random_images(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Uniform images in [-1, 1]."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def perturbed(images: torch.Tensor, amplitude: float, seed: int = 1) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    return (images + amplitude * noise).clamp(-1, 1)


def with_square(images: torch.Tensor, value: float = 1.0, corner: tuple[int, int] = (2, 2), side: int = 8) -> torch.Tensor:
    """A copy with a constant square pasted in (a localized corruption)."""
    corrupted = images.clone()
    corrupted[..., corner[0] : corner[0] + side, corner[1] : corner[1] + side] = value
    return corrupted


@pytest.fixture
def isolated_torch_hub(tmp_path, monkeypatch):
    """An empty torch hub cache and no weights environment variable; restored afterwards."""
    previous = torch.hub.get_dir()
    hub = tmp_path / "torch-hub"
    torch.hub.set_dir(str(hub))
    monkeypatch.delenv(ALEXNET_WEIGHTS_ENV, raising=False)
    yield hub
    torch.hub.set_dir(previous)


@pytest.fixture(scope="module")
def alexnet_npz() -> Path:
    return shared_file(ALEXNET_NPZ)


@pytest.fixture(scope="module")
def imagenet_lpips(alexnet_npz):
    return load_lpips(alexnet_npz)


@pytest.fixture(scope="module")
def random_lpips():
    return load_lpips(random_backbone=True)


@pytest.fixture(scope="module")
def tiny_prior():
    return create_prior(16, channels=1, network="tiny", seed=0)


@pytest.fixture(scope="module")
def mnist32() -> torch.Tensor:
    """Eight real MNIST test digits resized to 32×32, in [-1, 1]."""
    digits = np.load(shared_file("mnist.npz"))["test_images"][:8]
    resized = np.stack([resize(digit.astype(np.float64) / 255.0, (32, 32), order=1, anti_aliasing=False) for digit in digits])
    return torch.from_numpy(resized * 2 - 1).float()[:, None]


def fake_alexnet_state(seed: int = 0, with_classifier: bool = True) -> dict[str, torch.Tensor]:
    """A state dict in torchvision's AlexNet layout with random values."""
    generator = torch.Generator().manual_seed(seed)
    state = {key: torch.randn(shape, generator=generator) * 0.01 for key, shape in ALEXNET_FEATURE_SHAPES.items()}
    if with_classifier:
        state["classifier.1.weight"] = torch.zeros(8, 9216)
        state["classifier.1.bias"] = torch.zeros(8)
    return state


def backbone_state(model) -> dict[str, torch.Tensor]:
    """The model's AlexNet layers under torchvision's ``features.*`` names."""
    slices = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    state = model.state_dict()
    return {key: state[f"net.slice{slices[int(key.split('.')[1])]}.{key.split('.', 1)[1]}"] for key in ALEXNET_FEATURE_SHAPES}


# --- LPIPS with the real ImageNet weights ------------------------------------------------


@pytest.mark.shared_data
def test_lpips_backbone_equals_the_weights_file(imagenet_lpips, alexnet_npz):
    stored = np.load(alexnet_npz, allow_pickle=False)
    loaded = backbone_state(imagenet_lpips)
    for key in ALEXNET_FEATURE_SHAPES:
        np.testing.assert_array_equal(loaded[key].numpy(), stored[key])
    assert imagenet_lpips.napari_klip_backbone == str(alexnet_npz)
    assert not imagenet_lpips.training and not any(p.requires_grad for p in imagenet_lpips.parameters())


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore::UserWarning:torchvision")
@pytest.mark.parametrize("channels", [1, 3])
def test_lpips_matches_the_lpips_package(imagenet_lpips, channels):
    import lpips

    reference = random_images((3, channels, 32, 32), seed=0)
    candidate = perturbed(reference, 0.3)
    result = LpipsDistance(imagenet_lpips)(reference, candidate)
    assert result.values.dtype == torch.float32 and result.values.shape == (3,)
    assert result.maps.dtype == torch.float32 and result.maps.shape == (3, 32, 32)

    rgb_reference, rgb_candidate = reference.expand(-1, 3, -1, -1), candidate.expand(-1, 3, -1, -1)
    non_spatial = lpips.LPIPS(net="alex", pnet_rand=True, spatial=False, verbose=False)
    non_spatial.load_state_dict(imagenet_lpips.state_dict())
    with torch.no_grad():
        expected_values = non_spatial.eval()(rgb_reference, rgb_candidate).flatten()
        expected_maps = imagenet_lpips(rgb_reference, rgb_candidate)[:, 0]
    torch.testing.assert_close(result.values, expected_values, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(result.maps, expected_maps, rtol=1e-5, atol=1e-7)
    # bilinear upsampling from AlexNet's 7×7 / 3×3 / 1×1 grids keeps the mean only approximately
    torch.testing.assert_close(result.maps.mean(dim=(1, 2)), result.values, rtol=0.01, atol=0)


@pytest.mark.shared_data
def test_lpips_identity_perturbation_and_localization(imagenet_lpips, mnist32):
    distance = LpipsDistance(imagenet_lpips)
    assert distance.name == "lpips"
    same = distance(mnist32, mnist32.clone())
    assert torch.all(same.values.abs() < 1e-6) and torch.all(same.maps.abs() < 1e-6)
    slightly = distance(mnist32, perturbed(mnist32, 0.05)).values
    strongly = distance(mnist32, perturbed(mnist32, 0.5)).values
    assert torch.all(slightly > 0) and torch.all(strongly > slightly)
    corrupted = with_square(mnist32, value=-1.0, corner=(20, 20), side=10)
    maps = distance(mnist32, corrupted).maps
    # at 32×32 the three deepest AlexNet layers are 1×1 (constant maps), so the contrast is modest
    assert maps[:, 20:30, 20:30].mean() > 1.5 * maps[:, :12, :12].mean()
    upsampled_maps = LpipsDistance(imagenet_lpips, input_size=128)(mnist32, corrupted).maps
    assert upsampled_maps[:, 20:30, 20:30].mean() > 3 * upsampled_maps[:, :12, :12].mean()


def test_lpips_reads_torchvision_checkpoints_and_npz_alike(tmp_path, random_lpips):
    state = fake_alexnet_state()
    checkpoint = tmp_path / TORCHVISION_ALEXNET_FILE
    torch.save(state, checkpoint)
    archive = tmp_path / "features.npz"
    np.savez(archive, **{key: value.numpy() for key, value in state.items() if key.startswith("features")})
    from_checkpoint, from_archive = read_alexnet_features(checkpoint), read_alexnet_features(archive)
    assert set(from_checkpoint) == set(ALEXNET_FEATURE_SHAPES)
    for key in ALEXNET_FEATURE_SHAPES:
        torch.testing.assert_close(from_checkpoint[key], state[key], rtol=0, atol=0)
        torch.testing.assert_close(from_archive[key], state[key], rtol=0, atol=0)
    model = load_lpips(checkpoint)
    for key, value in backbone_state(model).items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    images = random_images((2, 1, 32, 32), seed=3)
    assert LpipsDistance(model).name == "lpips"
    assert not torch.equal(LpipsDistance(model)(images, -images).values, LpipsDistance(random_lpips)(images, -images).values)


def test_lpips_on_upsampled_images(random_lpips):
    reference = random_images((2, 1, 32, 32), seed=17)
    candidate = perturbed(reference, 0.3)
    resized = LpipsDistance(random_lpips, input_size=64)
    assert resized.name == "lpips-random-backbone@64"
    result = resized(reference, candidate)
    assert result.maps.shape == (2, 32, 32)

    def upsample(images):
        return torch.nn.functional.interpolate(images, size=(64, 64), mode="bilinear", align_corners=False)

    at_64 = LpipsDistance(random_lpips)(upsample(reference), upsample(candidate))
    torch.testing.assert_close(result.values, at_64.values)
    torch.testing.assert_close(result.maps.mean(dim=(1, 2)), at_64.maps.mean(dim=(1, 2)))
    small = random_images((1, 1, 16, 16), seed=18)
    assert resized(small, small).maps.shape == (1, 16, 16)
    with pytest.raises(ValueError, match="input_size must be an integer >= 31"):
        LpipsDistance(random_lpips, input_size=16)


# --- where the AlexNet weights come from --------------------------------------------------


def test_weights_search_order(tmp_path, isolated_torch_hub, monkeypatch):
    cached = isolated_torch_hub / "checkpoints" / TORCHVISION_ALEXNET_FILE
    cached.parent.mkdir(parents=True)
    torch.save(fake_alexnet_state(), cached)
    assert find_alexnet_weights() == cached
    from_environment = tmp_path / "env.pth"
    from_environment.write_bytes(cached.read_bytes())
    monkeypatch.setenv(ALEXNET_WEIGHTS_ENV, str(from_environment))
    assert find_alexnet_weights() == from_environment
    explicit = tmp_path / "explicit.pth"
    explicit.write_bytes(cached.read_bytes())
    assert find_alexnet_weights(explicit) == explicit
    monkeypatch.delenv(ALEXNET_WEIGHTS_ENV)
    cached.unlink()
    assert find_alexnet_weights() == lpips_distance.PACKAGED_ALEXNET_WEIGHTS  # last: the copy shipped in the package


def test_missing_weights_say_what_to_place_where(isolated_torch_hub, tmp_path, monkeypatch):
    monkeypatch.setattr(lpips_distance, "PACKAGED_ALEXNET_WEIGHTS", tmp_path / "not-installed.npz")  # a broken install
    expected_place = str(isolated_torch_hub / "checkpoints" / TORCHVISION_ALEXNET_FILE)
    for attempt in (find_alexnet_weights, lambda: make_distance("lpips")):
        with pytest.raises(LpipsWeightsError) as caught:
            attempt()
        message = str(caught.value)
        assert isinstance(caught.value, FileNotFoundError)
        assert expected_place in message and ALEXNET_WEIGHTS_ENV in message
        for alternative in ("'mse'", "'ssim'", "'prior-features'"):
            assert alternative in message


def test_named_but_absent_weights_are_an_error(tmp_path, isolated_torch_hub, monkeypatch):
    with pytest.raises(LpipsWeightsError, match="is not a file"):
        find_alexnet_weights(tmp_path / "nowhere.pth")
    monkeypatch.setenv(ALEXNET_WEIGHTS_ENV, str(tmp_path / "nowhere.npz"))
    with pytest.raises(LpipsWeightsError, match=ALEXNET_WEIGHTS_ENV):
        find_alexnet_weights()


@pytest.mark.parametrize("problem", ["missing layer", "wrong shape", "not weights", "not a mapping"])
def test_wrong_weights_file(tmp_path, problem):
    state = fake_alexnet_state(with_classifier=False)
    path = tmp_path / "weights.npz"
    if problem == "missing layer":
        state.pop("features.8.weight")
        np.savez(path, **{key: value.numpy() for key, value in state.items()})
        match = "lacks features.8.weight"
    elif problem == "wrong shape":
        state["features.0.weight"] = torch.zeros(64, 1, 11, 11)
        np.savez(path, **{key: value.numpy() for key, value in state.items()})
        match = r"'features.0.weight' has shape \(64, 1, 11, 11\), expected \(64, 3, 11, 11\)"
    elif problem == "not weights":
        path = tmp_path / "weights.pth"
        path.write_bytes(b"this is not a weights file")
        match = "neither an .npz nor a torch state dict"
    else:
        path = tmp_path / "weights.pth"
        torch.save([torch.zeros(3)], path)
        match = "not a mapping"
    with pytest.raises(LpipsWeightsFormatError, match=match):
        load_lpips(path)
    assert issubclass(LpipsWeightsFormatError, LpipsWeightsError)


def test_random_backbone_is_labelled_reproducible_and_leaves_the_rng_alone(random_lpips):
    rng_state = torch.get_rng_state()
    distance = make_distance("lpips", random_lpips_backbone=True)
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert distance.name == LPIPS_RANDOM_BACKBONE_NAME == "lpips-random-backbone"
    assert distance.model.napari_klip_backbone == "random"
    for key, value in backbone_state(random_lpips).items():
        torch.testing.assert_close(backbone_state(distance.model)[key], value, rtol=0, atol=0)
    images = random_images((2, 3, 32, 32), seed=4)
    assert torch.all(distance(images, images).values.abs() < 1e-6)
    assert torch.all(distance(images, perturbed(images, 0.3)).values > 0)
    with pytest.raises(ValueError, match="not both"):
        load_lpips("weights.npz", random_backbone=True)


# --- MSE and SSIM against numpy / scikit-image ---------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_mse_matches_numpy(channels):
    reference = random_images((3, channels, 12, 17), seed=5)
    candidate = random_images((3, channels, 12, 17), seed=6)
    result = MseDistance()(reference, candidate)
    squared = (candidate.double().numpy() - reference.double().numpy()) ** 2
    np.testing.assert_allclose(result.maps.numpy(), squared.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(result.values.numpy(), squared.mean(axis=(1, 2, 3)), rtol=1e-6)


def assert_ssim_matches_skimage(reference: torch.Tensor, candidate: torch.Tensor, win_size: int = 7) -> None:
    result = SsimDistance(win_size=win_size)(reference, candidate)
    assert result.maps.shape == (reference.shape[0], *reference.shape[-2:])
    for index in range(reference.shape[0]):
        first, second = reference[index].double().numpy(), candidate[index].double().numpy()
        options = dict(data_range=2, win_size=win_size, gaussian_weights=False, use_sample_covariance=True, full=True)
        if first.shape[0] == 1:
            similarity, similarity_map = structural_similarity(first[0], second[0], **options)
        else:
            similarity, similarity_map = structural_similarity(first, second, channel_axis=0, **options)
            similarity_map = similarity_map.mean(axis=0)
        assert abs(result.values[index].item() - (1 - similarity)) < 1e-5
        np.testing.assert_allclose(result.maps[index].numpy(), 1 - similarity_map, atol=1e-5, rtol=0)
        crop = (win_size - 1) // 2
        interior = result.maps[index, crop:-crop, crop:-crop].mean().item()
        assert abs(interior - result.values[index].item()) < 1e-5


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_skimage_on_random_images(channels):
    reference = random_images((2, channels, 19, 26), seed=7)
    assert_ssim_matches_skimage(reference, perturbed(reference, 0.4))
    assert_ssim_matches_skimage(reference, random_images((2, channels, 19, 26), seed=8), win_size=5)


@pytest.mark.shared_data
def test_ssim_matches_skimage_on_real_digits(mnist32):
    assert_ssim_matches_skimage(mnist32, perturbed(mnist32, 0.1))
    assert_ssim_matches_skimage(mnist32, mnist32.roll(1, dims=0))
    assert_ssim_matches_skimage(mnist32, with_square(mnist32, value=-1.0))


def test_ssim_rejects_bad_windows():
    images = random_images((1, 1, 6, 9), seed=9)
    with pytest.raises(ValueError, match="exceeds the 6x9 images"):
        SsimDistance()(images, images)
    with pytest.raises(ValueError, match="odd integer"):
        SsimDistance(win_size=4)(images, images)


# --- prior features --------------------------------------------------------------------------


def test_prior_features_identity_symmetry_determinism(tiny_prior):
    distance = make_distance("prior-features", prior=tiny_prior)
    assert distance.name == "prior-features" and distance.timestep == 50
    reference = random_images((3, 1, 16, 16), seed=10)
    candidate = perturbed(reference, 0.3)
    same = distance(reference, reference.clone())
    assert torch.all(same.values.abs() < 1e-6) and torch.all(same.maps.abs() < 1e-6)
    forward, backward = distance(reference, candidate), distance(candidate, reference)
    torch.testing.assert_close(forward.values, backward.values, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(forward.maps, backward.maps, rtol=1e-5, atol=1e-7)
    again = PriorFeatureDistance(tiny_prior)(reference, candidate)
    assert torch.equal(again.values, forward.values) and torch.equal(again.maps, forward.maps)
    alone = distance(reference[1:2], candidate[1:2])  # a pair's distance does not depend on its batch
    torch.testing.assert_close(alone.values, forward.values[1:2], rtol=1e-5, atol=1e-7)
    assert forward.maps.shape == (3, 16, 16)
    torch.testing.assert_close(forward.maps.mean(dim=(1, 2)), forward.values, rtol=1e-5, atol=1e-7)
    assert not any(block._forward_hooks for block in [*tiny_prior.unet.down_blocks, tiny_prior.unet.mid_block])


def test_prior_features_grow_with_the_difference_and_localize(tiny_prior):
    distance = PriorFeatureDistance(tiny_prior)
    reference = random_images((4, 1, 16, 16), seed=11) * 0.5
    slightly, strongly = (distance(reference, perturbed(reference, amplitude)).values for amplitude in (0.05, 0.5))
    assert torch.all(slightly > 0) and torch.all(strongly > 2 * slightly)
    maps = distance(reference, with_square(reference, value=1.0, corner=(8, 8), side=6)).maps
    assert maps[:, 8:14, 8:14].mean() > 2 * maps[:, :5, :5].mean()


def test_prior_features_checks_its_arguments(tiny_prior):
    with pytest.raises(ValueError, match="needs a prior"):
        make_distance("prior-features")
    with pytest.raises(ValueError, match="timestep must be an integer in 0..999"):
        PriorFeatureDistance(tiny_prior, timestep=1000)
    images = random_images((2, 1, 32, 32), seed=12)
    with pytest.raises(ValueError, match="1 channel\\(s\\) at 16x16, got 1 at 32x32"):
        PriorFeatureDistance(tiny_prior)(images, images)


# --- shared behaviour and bad inputs -----------------------------------------------------------


def cheap_distances(random_lpips, tiny_prior):
    return [MseDistance(), SsimDistance(), LpipsDistance(random_lpips), PriorFeatureDistance(tiny_prior)]


def test_make_distance_names():
    assert DISTANCES == ("lpips", "mse", "ssim", "prior-features")
    assert make_distance("mse").name == "mse" and make_distance("ssim").name == "ssim"
    with pytest.raises(ValueError, match="unknown distance 'l2'; expected one of lpips, mse, ssim, prior-features"):
        make_distance("l2")


def test_distances_leave_inputs_alone(random_lpips, tiny_prior):
    for distance in cheap_distances(random_lpips, tiny_prior):
        size = 16 if distance.name == "prior-features" else 32
        reference = random_images((2, 1, size, size), seed=13)
        candidate = perturbed(reference, 0.2)
        before = reference.clone(), candidate.clone()
        result = distance(reference, candidate)
        assert isinstance(result, DistanceResult)
        assert torch.equal(reference, before[0]) and torch.equal(candidate, before[1]), distance.name
        assert result.values.dtype == result.maps.dtype == torch.float32
        assert torch.all(result.values > 0), distance.name


def test_bad_inputs_are_explained(random_lpips, tiny_prior):
    images = random_images((2, 1, 32, 32), seed=14)
    for distance in cheap_distances(random_lpips, tiny_prior):
        with pytest.raises(ValueError, match="differ in shape"):
            distance(images, images[:1])
        with pytest.raises(ValueError, match=r"must be shaped \(N, C, H, W\), got 3-D"):
            distance(images[0], images[0])
        with pytest.raises(TypeError, match="floating-point"):
            distance((images > 0).to(torch.uint8), (images > 0).to(torch.uint8))
        with pytest.raises(TypeError, match="torch.Tensor"):
            distance(images.numpy(), images.numpy())
        with pytest.raises(ValueError, match="NaN"):
            distance(images, torch.full_like(images, float("nan")))
    lpips_distance = LpipsDistance(random_lpips)
    small = random_images((1, 1, 28, 28), seed=15)
    with pytest.raises(ValueError, match="at least 31x31, got 28x28"):
        lpips_distance(small, small)
    two_channels = random_images((1, 2, 32, 32), seed=16)
    with pytest.raises(ValueError, match="C=2"):
        lpips_distance(two_channels, two_channels)
