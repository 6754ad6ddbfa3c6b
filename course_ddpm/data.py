"""MNIST for diffusion models: images as float32 in [-1, 1], found offline or downloaded.

The scaling students most often get wrong
------------------------------------------
``torchvision.transforms.ToTensor`` gives pixels in [0, 1]. The diffusion maths assumes
data in [-1, 1]:

    x0 = 2 * pixel - 1                      (pixel in [0, 1], x0 in [-1, 1])

so that the data has roughly unit scale, like the prior x_T ~ N(0, I) that sampling
starts from (q(x_T | x0) = N(sqrt(alpha_bar_T) x0, (1 - alpha_bar_T) I), Ho et al. 2020
arXiv:2006.11239, eq. 4), and so that the discrete decoder p(x0 | x1), which splits
[-1, 1] into 256 bins of width 2/255 (Ho et al. 2020, eq. 13), sees the pixel levels
k = 0..255 at x0 = 2 k / 255 - 1. Feeding [0, 1] data trains a model on a different
problem and breaks the bits-per-dimension numbers. :func:`from_pixels` and
:func:`to_pixels` are the only two places where this conversion is written.

Where the files come from
-------------------------
:func:`resolve_root` picks the data folder: the ``root`` argument, else the environment
variable ``COURSE_DDPM_DATA``, else a user cache folder
(``$XDG_CACHE_HOME`` or ``~/.cache``)``/course_ddpm/data``. Inside it torchvision expects
``MNIST/raw/`` holding the four files

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

When their MD5s match, torchvision downloads nothing and only un-gzips them next to
themselves, which needs a writable folder. :func:`prepare_mnist` therefore copies the
four files from a read-only folder (a shared course folder, a CI cache) to the user
cache first. With no files and no network it raises :class:`MNISTUnavailableError`,
whose message names the folder to put the files in.

Shapes: images ``(N, 1, 28, 28)`` float32 in [-1, 1], labels ``(N,)`` int64.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import torch
from torchvision import transforms
from torchvision.datasets import MNIST

__all__ = [
    "ENV_VAR",
    "MNISTUnavailableError",
    "resolve_root",
    "prepare_mnist",
    "mnist_available",
    "mnist_dataset",
    "load_mnist",
    "to_pixels",
    "from_pixels",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the data folder (the one that holds ``MNIST/raw/``).
ENV_VAR = "COURSE_DDPM_DATA"

#: The four compressed files and their MD5s, exactly as torchvision checks them.
GZ_MD5 = dict(MNIST.resources)

#: Sizes in bytes of the un-gzipped files (IDX header + 28*28 bytes per image, 1 per label).
RAW_SIZES = {
    "train-images-idx3-ubyte": 16 + 60_000 * 28 * 28,
    "train-labels-idx1-ubyte": 8 + 60_000,
    "t10k-images-idx3-ubyte": 16 + 10_000 * 28 * 28,
    "t10k-labels-idx1-ubyte": 8 + 10_000,
}


class MNISTUnavailableError(RuntimeError):
    """MNIST is neither on disk nor downloadable; the message says where to put the files."""


# --- the scaling ----------------------------------------------------------------------


def from_pixels(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> model space [-1, 1]: x0 = 2 * pixel - 1.

    Args:
        x: any shape, floating point, values in [0, 1] (what ``ToTensor`` returns).
    Returns:
        same shape and dtype, values in [-1, 1].
    """
    if not torch.is_floating_point(x):
        raise TypeError(f"from_pixels: x must be a floating-point tensor, got dtype {x.dtype}")
    return x * 2 - 1


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """Model space [-1, 1] -> pixels in [0, 1], clamped: pixel = clamp((x0 + 1) / 2, 0, 1).

    Use it before showing or saving a sample; samples overshoot [-1, 1] slightly.

    Args:
        x: any shape, floating point (e.g. samples ``(B, 1, 28, 28)``).
    Returns:
        same shape and dtype, values in [0, 1].
    """
    if not torch.is_floating_point(x):
        raise TypeError(f"to_pixels: x must be a floating-point tensor, got dtype {x.dtype}")
    return ((x + 1) / 2).clamp(0, 1)


def _from_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixel levels 0..255 -> float32 in [-1, 1], as from_pixels(ToTensor(image))."""
    return from_pixels(x.to(torch.float32).div(255))


# --- where the files are --------------------------------------------------------------


def _cache_root() -> Path:
    """The user cache data folder: ($XDG_CACHE_HOME or ~/.cache)/course_ddpm/data."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "course_ddpm" / "data"


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data folder (the one holding ``MNIST/raw/``), as an absolute path.

    Order: the ``root`` argument, else ``$COURSE_DDPM_DATA``, else
    (``$XDG_CACHE_HOME`` or ``~/.cache``)``/course_ddpm/data``. Nothing is created.
    """
    if root is None:
        root = os.environ.get(ENV_VAR) or _cache_root()
    return Path(root).expanduser().absolute()


def _raw(root: Path) -> Path:
    return root / "MNIST" / "raw"


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _gz_ok(root: Path) -> bool:
    """All four .gz files are in root/MNIST/raw with torchvision's MD5s."""
    raw = _raw(root)
    return all((raw / name).is_file() and _md5(raw / name) == md5 for name, md5 in GZ_MD5.items())


def _extracted_ok(root: Path) -> bool:
    """All four un-gzipped files are in root/MNIST/raw with their expected sizes."""
    raw = _raw(root)
    return all((raw / name).is_file() and (raw / name).stat().st_size == size for name, size in RAW_SIZES.items())


def _writable(root: Path) -> bool:
    """Whether root/MNIST/raw can be created and written to, and may be.

    A folder on the way (root, root/MNIST, root/MNIST/raw) without the owner's write bit
    counts as read-only even for the superuser, who could write anyway: such a folder is
    shared on purpose, and we never un-gzip into it.
    """
    raw = _raw(root)
    marked_read_only = any(
        path.is_dir() and not path.stat().st_mode & stat.S_IWUSR for path in (root, root / "MNIST", raw)
    )
    deepest = raw
    while not deepest.exists():
        if deepest.parent == deepest:
            return False
        deepest = deepest.parent
    return not marked_read_only and deepest.is_dir() and os.access(deepest, os.W_OK | os.X_OK)


def _copy_gz(src: Path, dst: Path) -> None:
    """Copy the four .gz files from src/MNIST/raw to dst/MNIST/raw (atomic per file)."""
    raw_dst = _raw(dst)
    raw_dst.mkdir(parents=True, exist_ok=True)
    for name in GZ_MD5:
        fd, tmp = tempfile.mkstemp(dir=raw_dst, prefix=f".{name}.")
        os.close(fd)
        shutil.copyfile(_raw(src) / name, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, raw_dst / name)
    logger.info("copied the MNIST .gz files from read-only %s to %s", _raw(src), raw_dst)


def _unavailable(folder: Path, reason: str) -> MNISTUnavailableError:
    files = ", ".join(GZ_MD5)
    return MNISTUnavailableError(
        f"MNIST is not available: {reason}\n"
        f"Put the four files {files} into the folder\n"
        f"    {_raw(folder)}\n"
        f"or set the environment variable {ENV_VAR} to a folder whose MNIST/raw/ holds them\n"
        f"(then run `python -m course_ddpm.data` again)."
    )


def _extract(root: Path, download: bool) -> None:
    """Let torchvision check the MD5s, download missing files if allowed, and un-gzip."""
    for name, size in RAW_SIZES.items():  # a half-written file from an interrupted run
        path = _raw(root) / name
        if path.is_file() and path.stat().st_size != size:
            logger.warning("removing truncated %s", path)
            path.unlink()
    must_download = not _gz_ok(root)
    if must_download and not download:
        reason = f"the .gz files are missing or damaged in {_raw(root)} and downloading is off (download=False)."
        raise _unavailable(root, reason)
    if must_download:
        logger.info("downloading MNIST to %s", _raw(root))
    try:
        MNIST(root, train=False, download=True)  # downloads what is missing, un-gzips all four
    except Exception as err:  # noqa: BLE001 - any failure here means "no data"; the details go to the log
        logger.debug("torchvision could not prepare MNIST", exc_info=True)
        detail = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        what = "downloading failed (no network?)" if must_download else "torchvision could not read the files"
        raise _unavailable(root, f"{what}: {detail}") from None
    if not _extracted_ok(root):
        raise _unavailable(root, f"torchvision did not leave the expected files in {_raw(root)}.")


def prepare_mnist(root: str | os.PathLike[str] | None = None, download: bool = True) -> Path:
    """Make MNIST readable and return the folder to read it from.

    After this, ``torchvision.datasets.MNIST(returned, train=..., download=False)`` works
    without network. Cases, for the folder ``resolve_root(root)``:

    - un-gzipped files already there: returned as is (it may be read-only);
    - the four .gz files there and the folder writable: torchvision un-gzips them;
    - the folder read-only: the .gz files are copied to the user cache (see
      :func:`resolve_root`), which is prepared and returned instead;
    - no files: torchvision downloads them if ``download``, else
      :class:`MNISTUnavailableError`; it is also raised when the download fails.

    Args:
        root: data folder, see :func:`resolve_root`.
        download: allow downloading from the internet.
    Returns:
        the absolute data folder to pass to ``MNIST``.
    """
    root = resolve_root(root)
    if _extracted_ok(root):
        return root
    if _writable(root):
        _extract(root, download)
        return root

    cache = _cache_root()
    if cache == root:
        raise _unavailable(root, f"{_raw(root)} is read-only and holds no un-gzipped files.")
    if _extracted_ok(cache):
        logger.info("%s is read-only; using the copy in %s", _raw(root), cache)
        return cache
    if _gz_ok(root):
        _copy_gz(root, cache)
    _extract(cache, download)
    return cache


def mnist_available(root: str | os.PathLike[str] | None = None) -> bool:
    """Whether :func:`prepare_mnist` would succeed without network. Never downloads."""
    root = resolve_root(root)
    if _extracted_ok(root) or _gz_ok(root):
        return True
    if _writable(root):
        return False
    cache = _cache_root()
    return cache != root and (_extracted_ok(cache) or _gz_ok(cache))


# --- datasets ------------------------------------------------------------------------------


def mnist_dataset(train: bool = True, root: str | os.PathLike[str] | None = None) -> MNIST:
    """The MNIST split as a torchvision dataset whose items are ``(image, label)``.

    ``image`` is ``(1, 28, 28)`` float32 in [-1, 1] (``PILToTensor``, then
    x0 = 2 * pixel / 255 - 1), ``label`` an int. Data is prepared (and downloaded if
    needed) by :func:`prepare_mnist`. For training, :func:`load_mnist` is much faster.
    """
    transform = transforms.Compose([transforms.PILToTensor(), _from_uint8])
    return MNIST(prepare_mnist(root), train=train, transform=transform, download=False)


def load_mnist(train: bool = True, root: str | os.PathLike[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole MNIST split in memory, scaled exactly as :func:`mnist_dataset`'s items.

    Returns:
        x0: ``(N, 1, 28, 28)`` float32 in [-1, 1]; N = 60000 (train) or 10000 (test).
        labels: ``(N,)`` int64, digits 0..9.
    """
    dataset = MNIST(prepare_mnist(root), train=train, download=False)
    x0 = _from_uint8(dataset.data).unsqueeze(1)  # (N, 28, 28) uint8 -> (N, 1, 28, 28) float32
    labels = dataset.targets.to(torch.int64)  # (N,)
    assert x0.shape == (len(labels), 1, 28, 28), x0.shape
    return x0, labels


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m course_ddpm.data", description="Prepare MNIST for the course and print where it is."
    )
    parser.add_argument("--root", default=None, help=f"data folder (default: ${ENV_VAR}, else the user cache)")
    parser.add_argument("--no-download", action="store_true", help="never use the network")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        folder = prepare_mnist(args.root, download=not args.no_download)
    except MNISTUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"MNIST is ready in {_raw(folder)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
