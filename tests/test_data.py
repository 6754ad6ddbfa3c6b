"""Tests for course_ddpm.data: the [-1, 1] scaling, MNIST's published statistics, and
finding the files offline (read-only folders, environment variable, clear errors)."""

from __future__ import annotations

import shutil
import stat
import traceback
import urllib.request
from pathlib import Path
from urllib.error import URLError

import pytest
from conftest import require_or_skip
import torch
import torchvision.transforms.functional as TF

from course_ddpm import data
from course_ddpm.data import (
    ENV_VAR,
    MNISTUnavailableError,
    from_pixels,
    load_mnist,
    mnist_available,
    mnist_dataset,
    prepare_mnist,
    resolve_root,
    to_pixels,
)

# Published MNIST label counts for digits 0..9 (LeCun et al.; the same in every copy).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

LEVELS = torch.arange(256)  # the 8-bit pixel levels k = 0..255


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private user cache, so that no test touches the real ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    return tmp_path / "xdg" / "course_ddpm" / "data"


@pytest.fixture
def no_network(monkeypatch) -> list[str]:
    """Every URL fails to open, as it does offline; returns the URLs that were tried."""
    tried: list[str] = []

    def fail(request, *args, **kwargs):
        tried.append(getattr(request, "full_url", request))
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", fail)
    return tried


def copy_gz(src_root: Path, dst_root: Path) -> Path:
    """Copy the four .gz files of a prepared MNIST folder; returns dst_root."""
    (dst_root / "MNIST" / "raw").mkdir(parents=True)
    for name in data.GZ_MD5:
        src = src_root / "MNIST" / "raw" / name
        if not src.is_file():
            require_or_skip(f"{src} is absent (MNIST was prepared from un-gzipped files only)")
        shutil.copyfile(src, dst_root / "MNIST" / "raw" / name)
    return dst_root


def make_read_only(root: Path) -> None:
    for path in [root, root / "MNIST", root / "MNIST" / "raw", *(root / "MNIST" / "raw").iterdir()]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def make_writable(root: Path) -> None:
    for path in root.rglob("*"):
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    root.chmod(root.stat().st_mode | stat.S_IWUSR)


# --- scaling ------------------------------------------------------------------------------


def test_from_pixels_maps_levels_to_the_decoder_bins():
    # Level k of 255 sits at x0 = 2k/255 - 1 (the bin centres of Ho et al. eq. 13).
    pixels = LEVELS.to(torch.float32) / 255
    x0 = from_pixels(pixels)
    expected = LEVELS.to(torch.float64) * 2 / 255 - 1
    torch.testing.assert_close(x0.double(), expected, rtol=0, atol=1.2e-7)
    assert x0[0] == -1 and x0[-1] == 1 and x0.dtype == torch.float32


def test_round_trip_model_to_pixels_is_exact_on_the_data_grid():
    x0 = from_pixels(LEVELS.to(torch.float32) / 255)
    assert torch.equal(from_pixels(to_pixels(x0)), x0)


def test_round_trip_pixels_to_model_is_exact_in_8_bit():
    pixels = LEVELS.to(torch.float32) / 255
    back = to_pixels(from_pixels(pixels))
    torch.testing.assert_close(back, pixels, rtol=0, atol=6e-8)  # within one float32 ulp
    assert torch.equal(torch.round(back * 255).long(), LEVELS)


def test_to_pixels_clamps_overshooting_samples():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.5], dtype=torch.float64)
    assert torch.equal(to_pixels(x), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0], dtype=torch.float64))


def test_scaling_rejects_integer_tensors():
    with pytest.raises(TypeError, match="from_pixels.*uint8"):
        from_pixels(torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="to_pixels.*int64"):
        to_pixels(torch.zeros(3, dtype=torch.int64))


# --- where the data folder is ------------------------------------------------------------


def test_resolve_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_root() == tmp_path / "home" / ".cache" / "course_ddpm" / "data"

    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec ignores relative paths
    assert resolve_root() == tmp_path / "home" / ".cache" / "course_ddpm" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_root() == tmp_path / "xdg" / "course_ddpm" / "data"

    monkeypatch.setenv(ENV_VAR, "")  # empty counts as unset
    assert resolve_root() == tmp_path / "xdg" / "course_ddpm" / "data"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert resolve_root() == tmp_path / "env"

    assert resolve_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_root("~/x") == tmp_path / "home" / "x"
    monkeypatch.chdir(tmp_path)
    assert resolve_root("rel") == tmp_path / "rel"


def test_prepare_mnist_uses_the_environment_variable(tmp_path, monkeypatch, cache, no_network):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from_env"))
    with pytest.raises(MNISTUnavailableError) as info:
        prepare_mnist(download=False)
    assert str(tmp_path / "from_env" / "MNIST" / "raw") in str(info.value)
    assert not no_network  # download=False never reaches the network


# --- missing data gives one clear error ----------------------------------------------------


def test_missing_data_offline_gives_one_clear_error(tmp_path, cache, no_network):
    root = tmp_path / "empty"
    with pytest.raises(MNISTUnavailableError) as info:
        prepare_mnist(root, download=True)
    err = info.value
    assert isinstance(err, RuntimeError)
    assert no_network, "the download was not attempted"
    message = str(err)
    assert str(root / "MNIST" / "raw") in message
    assert ENV_VAR in message and "train-images-idx3-ubyte.gz" in message
    # No chained urllib/torchvision traceback: `raise ... from None`.
    assert err.__cause__ is None and err.__suppress_context__
    shown = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    assert "During handling" not in shown and "URLError" not in shown
    assert not mnist_available(root)


def test_damaged_files_are_not_accepted(tmp_path, cache, no_network):
    root = tmp_path / "damaged"
    (root / "MNIST" / "raw").mkdir(parents=True)
    for name in data.GZ_MD5:
        (root / "MNIST" / "raw" / name).write_bytes(b"not mnist")
    assert not mnist_available(root)
    with pytest.raises(MNISTUnavailableError, match="missing or damaged"):
        prepare_mnist(root, download=False)
    assert not no_network


def test_read_only_empty_root_names_the_cache(tmp_path, cache, no_network):
    root = tmp_path / "ro_empty"
    (root / "MNIST" / "raw").mkdir(parents=True)
    make_read_only(root)
    try:
        with pytest.raises(MNISTUnavailableError) as info:
            prepare_mnist(root, download=False)
    finally:
        make_writable(root)
    assert str(cache / "MNIST" / "raw") in str(info.value)
    assert list((root / "MNIST" / "raw").iterdir()) == []


# --- MNIST itself --------------------------------------------------------------------------


@pytest.mark.parametrize("train, counts", [(True, TRAIN_COUNTS), (False, TEST_COUNTS)], ids=["train", "test"])
def test_load_mnist_shapes_range_and_label_counts(mnist_root, train, counts):
    x0, labels = load_mnist(train=train, root=mnist_root)
    n = sum(counts)
    assert x0.shape == (n, 1, 28, 28) and x0.dtype == torch.float32
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert x0.min() == -1 and x0.max() == 1
    # Every value is one of the 256 levels 2k/255 - 1 (checked on the first 2000 images).
    some = x0[:2000]
    assert torch.equal(from_pixels(torch.round(to_pixels(some) * 255) / 255), some)
    assert torch.bincount(labels, minlength=10).tolist() == counts


def test_dataset_items_equal_load_mnist_and_torchvision_normalize(mnist_root):
    dataset = mnist_dataset(train=False, root=mnist_root)
    x0, labels = load_mnist(train=False, root=mnist_root)
    assert len(dataset) == len(labels) == 10_000
    for i in [0, 1, 4321, 9999]:
        image, label = dataset[i]
        assert image.shape == (1, 28, 28) and image.dtype == torch.float32
        assert torch.equal(image, x0[i]) and label == labels[i]
        # Independently: the classic ToTensor + Normalize(mean=0.5, std=0.5) recipe.
        pil = TF.to_pil_image(dataset.data[i].numpy(), mode="L")
        reference = TF.normalize(TF.to_tensor(pil), mean=[0.5], std=[0.5])
        torch.testing.assert_close(image, reference, rtol=0, atol=1e-6)


def test_read_only_root_is_copied_to_the_cache(tmp_path, cache, no_network, mnist_root, monkeypatch):
    root = copy_gz(mnist_root, tmp_path / "shared")
    make_read_only(root)
    try:
        assert mnist_available(root)
        prepared = prepare_mnist(root, download=False)
        assert prepared == cache
        assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(data.GZ_MD5)  # untouched
        assert data._extracted_ok(cache) and data._gz_ok(cache)

        def no_copy(*args):
            raise AssertionError("copied again although the cache is ready")

        monkeypatch.setattr(data, "_copy_gz", no_copy)
        assert prepare_mnist(root, download=False) == cache
        _, labels = load_mnist(train=False, root=root)
        assert torch.bincount(labels, minlength=10).tolist() == TEST_COUNTS
    finally:
        make_writable(root)
    assert not no_network


def test_writable_root_is_prepared_in_place_and_repaired(tmp_path, cache, no_network, mnist_root):
    root = copy_gz(mnist_root, tmp_path / "mine")
    assert prepare_mnist(root, download=False) == root
    labels_file = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels_file.write_bytes(labels_file.read_bytes()[:100])  # as if un-gzipping was interrupted
    assert prepare_mnist(root, download=False) == root
    assert labels_file.stat().st_size == data.RAW_SIZES[labels_file.name]
    assert not cache.exists() and not no_network


def test_a_folder_marked_read_only_anywhere_on_the_way_is_never_written(tmp_path):
    # Even the superuser (CI containers) must not un-gzip into a shared, read-only folder.
    root = tmp_path / "shared"
    (root / "MNIST" / "raw").mkdir(parents=True)
    assert data._writable(root) and data._writable(tmp_path / "not" / "yet" / "there")
    root.chmod(0o555)  # only the top folder is marked
    try:
        assert not data._writable(root)
    finally:
        root.chmod(0o755)
