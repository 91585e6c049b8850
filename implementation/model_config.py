"""Preprocessing as data: one config object next to each compiled model (timm's PretrainedCfg)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class ModelConfig:
    """How to feed a face embedder and read its output.

    The network input is ``(pixel - mean) * scale`` per channel, in ``colour_order``, laid out as
    ``layout`` with shape ``input_shape``. Pixels are 0..255. The output is one embedding of
    ``embedding_size`` floats per image (not necessarily unit length; the pipeline normalises).
    ``similarity`` declares how two embeddings compare; ``"cosine-q24"`` is
    :func:`implementation.template.similarity_matrix`, computed exactly in blocks.
    """

    name: str
    input_name: str = "input"
    input_shape: tuple[int, ...] = (1, 3, 150, 150)
    layout: str = "NCHW"
    colour_order: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    embedding_size: int = 128
    chip: dict = field(default_factory=dict)  # alignment framing, e.g. {"kind": "dlib", "size": 150, "padding": 0.25}
    similarity: str = "cosine-q24"  # how embeddings compare (implementation.template.SIMILARITY)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the network input."""
        if self.layout == "NCHW":
            return int(self.input_shape[2]), int(self.input_shape[3])
        return int(self.input_shape[1]), int(self.input_shape[2])

    def network_input(self, chip: np.ndarray) -> np.ndarray:
        """An aligned uint8 RGB chip (h, w, 3) -> the network's (height, width, 3) float32 input.

        Resized to :attr:`input_size` when it differs, put in :attr:`colour_order`, then
        ``(pixel - mean) * scale`` per channel.
        """
        size = self.input_size
        if chip.shape[:2] != size:
            chip = cv2.resize(chip, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        x = chip if self.colour_order.upper() == "RGB" else chip[:, :, ::-1]
        return (x.astype(np.float32) - np.asarray(self.mean, np.float32)) * np.float32(self.scale)

    def network_batch(self, chip: np.ndarray, mirror: bool = False) -> np.ndarray:
        """``batch(network_input(chip))``, with its mirror image second when ``mirror``, the same
        numbers written straight into the batch (no intermediate image, stack or transpose)."""
        size = self.input_size
        if chip.shape[:2] != size:
            chip = cv2.resize(chip, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        order = (0, 1, 2) if self.colour_order.upper() == "RGB" else (2, 1, 0)
        nchw = self.layout == "NCHW"
        out = np.empty((2 if mirror else 1, *((3, *size) if nchw else (*size, 3))), np.float32)
        planes = out[0] if nchw else out[0].transpose(2, 0, 1)
        scale = np.float32(self.scale)
        for c, source in enumerate(order):
            np.subtract(chip[:, :, source], np.float32(self.mean[c]), out=planes[c], dtype=np.float32)
            np.multiply(planes[c], scale, out=planes[c])
        if mirror:
            out[1] = out[0][:, :, ::-1] if nchw else out[0][:, ::-1]
        return out

    def batch(self, *images: np.ndarray) -> np.ndarray:
        """(height, width, 3) inputs -> one contiguous float32 batch of them in :attr:`layout`."""
        net_in = np.stack(images)
        if self.layout == "NCHW":
            net_in = net_in.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(net_in, np.float32)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ModelConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("input_shape", "mean"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        return cls.from_json(json.loads(Path(path).read_text()))


DLIB_RESNET = ModelConfig(
    name="dlib_face_recognition_resnet_model_v1",
    input_name="input",
    input_shape=(1, 3, 150, 150),
    layout="NCHW",
    colour_order="RGB",
    mean=(122.782, 117.001, 104.298),
    scale=1.0 / 256.0,
    embedding_size=128,
    chip={"kind": "dlib", "size": 150, "padding": 0.25},
)
