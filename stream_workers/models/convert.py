"""Convert a float16 CTranslate2 Whisper model into an openai-whisper checkpoint, exactly.

Both hold the same weights in different layouts: CTranslate2 fuses self-attention
q/k/v into one linear and cross-attention k/v into another, and has no key bias (the
fused bias slice is zero); openai-whisper ties the output projection to the token
embedding. Alignment heads live in CTranslate2's `config.json`.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_workers.errors import ConversionError
from stream_workers.models.ct2_format import CT2Model, read_ct2_model

ALIGNMENT_HEADS_KEY = "alignment_heads"


def convert_ct2_to_openai(ct2_dir: Path, destination: Path) -> Path:
    """Write the checkpoint to `destination` (callers make the write atomic) and return it."""
    import torch  # noqa: PLC0415 - torch is heavy; only conversion and the openai engine need it

    model = read_ct2_model(ct2_dir / "model.bin")
    if model.spec != "WhisperSpec":
        raise ConversionError(f"{ct2_dir} holds a {model.spec}, not a Whisper model")
    embedding = model.get("decoder/embeddings/weight")
    if embedding.dtype != np.float16:
        raise ConversionError(
            f"{ct2_dir} is stored as {embedding.dtype}; only float16 models convert exactly"
        )
    dims = _dimensions(model)
    state = {name: torch.from_numpy(array.copy()) for name, array in _state_dict(model, dims)}
    checkpoint: dict[str, Any] = {"dims": dims, "model_state_dict": state}
    checkpoint[ALIGNMENT_HEADS_KEY] = alignment_heads_dump(ct2_dir / "config.json", dims)
    torch.save(checkpoint, destination)
    return destination


def _count_layers(model: CT2Model, prefix: str) -> int:
    count = 0
    while f"{prefix}/layer_{count}/ffn/linear_0/weight" in model.variables:
        count += 1
    return count


def _scalar(model: CT2Model, name: str) -> int:
    return int(model.get(name).reshape(()).item())


def _dimensions(model: CT2Model) -> dict[str, int]:
    conv1 = model.get("encoder/conv1/weight")
    embedding = model.get("decoder/embeddings/weight")
    return {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(model.get("encoder/position_encodings/encodings").shape[0]),
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": _scalar(model, "encoder/num_heads"),
        "n_audio_layer": _count_layers(model, "encoder"),
        "n_vocab": int(embedding.shape[0]),
        "n_text_ctx": int(model.get("decoder/position_encodings/encodings").shape[0]),
        "n_text_state": int(embedding.shape[1]),
        "n_text_head": _scalar(model, "decoder/num_heads"),
        "n_text_layer": _count_layers(model, "decoder"),
    }


Named = tuple[str, npt.NDArray[np.generic]]


def _norm(model: CT2Model, source: str, target: str) -> list[Named]:
    return [
        (f"{target}.weight", model.get(f"{source}/gamma")),
        (f"{target}.bias", model.get(f"{source}/beta")),
    ]


def _linear(model: CT2Model, source: str, target: str) -> list[Named]:
    return [
        (f"{target}.weight", model.get(f"{source}/weight")),
        (f"{target}.bias", model.get(f"{source}/bias")),
    ]


def _split(model: CT2Model, source: str, targets: list[str]) -> list[Named]:
    """Unfuse a linear; the key projection has no bias, and its fused slice must be zero."""
    weights = np.split(model.get(f"{source}/weight"), len(targets))
    biases = np.split(model.get(f"{source}/bias"), len(targets))
    out: list[Named] = []
    for target, weight, bias in zip(targets, weights, biases, strict=True):
        out.append((f"{target}.weight", weight))
        if target.endswith(".key"):
            if np.any(bias != 0):
                raise ConversionError(f"{source}: the key bias is not zero; cannot drop it")
        else:
            out.append((f"{target}.bias", bias))
    return out


def _block(model: CT2Model, source: str, target: str, *, cross: bool) -> list[Named]:
    attn = f"{source}/self_attention"
    out = [
        *_split(
            model, f"{attn}/linear_0", [f"{target}.attn.{p}" for p in ("query", "key", "value")]
        ),
        *_linear(model, f"{attn}/linear_1", f"{target}.attn.out"),
        *_norm(model, f"{attn}/layer_norm", f"{target}.attn_ln"),
        *_linear(model, f"{source}/ffn/linear_0", f"{target}.mlp.0"),
        *_linear(model, f"{source}/ffn/linear_1", f"{target}.mlp.2"),
        *_norm(model, f"{source}/ffn/layer_norm", f"{target}.mlp_ln"),
    ]
    if cross:
        cross_src, cross_dst = f"{source}/attention", f"{target}.cross_attn"
        out += [
            *_linear(model, f"{cross_src}/linear_0", f"{cross_dst}.query"),
            *_split(model, f"{cross_src}/linear_1", [f"{cross_dst}.key", f"{cross_dst}.value"]),
            *_linear(model, f"{cross_src}/linear_2", f"{cross_dst}.out"),
            *_norm(model, f"{cross_src}/layer_norm", f"{target}.cross_attn_ln"),
        ]
    return out


def _state_dict(model: CT2Model, dims: dict[str, int]) -> list[Named]:
    out: list[Named] = [
        ("encoder.positional_embedding", model.get("encoder/position_encodings/encodings")),
        *_linear(model, "encoder/conv1", "encoder.conv1"),
        *_linear(model, "encoder/conv2", "encoder.conv2"),
        *_norm(model, "encoder/layer_norm", "encoder.ln_post"),
        ("decoder.positional_embedding", model.get("decoder/position_encodings/encodings")),
        ("decoder.token_embedding.weight", model.get("decoder/embeddings/weight")),
        *_norm(model, "decoder/layer_norm", "decoder.ln"),
    ]
    for index in range(dims["n_audio_layer"]):
        out += _block(model, f"encoder/layer_{index}", f"encoder.blocks.{index}", cross=False)
    for index in range(dims["n_text_layer"]):
        out += _block(model, f"decoder/layer_{index}", f"decoder.blocks.{index}", cross=True)
    return out


def alignment_heads_dump(config_path: Path, dims: dict[str, int]) -> bytes:
    """openai-whisper's encoding of the heads: base85 of a gzipped (layers x heads) bool mask."""
    try:
        heads = json.loads(config_path.read_text())["alignment_heads"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConversionError(f"{config_path}: no alignment_heads ({exc})") from exc
    mask = np.zeros((dims["n_text_layer"], dims["n_text_head"]), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes()))
