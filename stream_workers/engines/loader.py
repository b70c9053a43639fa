"""Builds engine instances for the pool from the catalog's model files."""

from __future__ import annotations

from stream_workers.engines import faster, openai
from stream_workers.engines.base import EngineName, ModelKey, Transcriber
from stream_workers.engines.process import EngineSpec, ProcessTranscriber, open_transcriber
from stream_workers.errors import UnknownEngineError
from stream_workers.models.catalog import ModelCatalog

# Size of the float16 weights in MB; an estimate for the pool's memory budget.
_FP16_MB = {"tiny": 75.0, "base": 145.0, "small": 484.0, "medium": 1530.0, "large": 3090.0}
_DTYPE_FACTOR = {"int8": 0.5, "int8_float32": 0.5, "float16": 1.0, "float32": 2.0}
_UNKNOWN_MB = 1000.0


class EngineLoader:
    def __init__(
        self,
        catalog: ModelCatalog,
        *,
        device: str = "cpu",
        cpu_threads: int = 0,
        batch_size: int = 8,
        fault_oom_models: frozenset[str] = frozenset(),
        process_engines: frozenset[str] = frozenset(),
    ) -> None:
        self._catalog = catalog
        self._device = device
        self._cpu_threads = cpu_threads
        self._batch_size = batch_size
        self._fault_oom_models = fault_oom_models
        # engines whose models each get a child process (see engines/process.py)
        self._process_engines = process_engines

    def key_for(self, engine: str, model: str) -> ModelKey:
        if engine == "faster-whisper":
            return ModelKey("faster-whisper", model, faster.default_compute_type(self._device))
        if engine == "openai-whisper":
            return ModelKey("openai-whisper", model, openai.default_compute_type(self._device))
        raise UnknownEngineError(f"unknown engine {engine!r}: faster-whisper or openai-whisper")

    def load(self, key: ModelKey) -> Transcriber:
        path = self._catalog.resolve(key.engine, key.model)
        if key.model in self._fault_oom_models:
            raise MemoryError(f"out of memory loading {key} (injected: WORKER_FAULT_OOM_MODELS)")
        spec = EngineSpec(key, path, self._device, self._cpu_threads, self._batch_size)
        if key.engine in self._process_engines:
            return ProcessTranscriber(spec)
        return open_transcriber(spec)

    def estimate_mb(self, key: ModelKey) -> float:
        size = key.model.removesuffix(".en").split("-")[0]
        base = _FP16_MB.get(size, _UNKNOWN_MB)
        return base * _DTYPE_FACTOR.get(key.compute_type, 1.0)

    def smaller(self, key: ModelKey) -> ModelKey | None:
        model = self._catalog.smaller(key.engine, key.model)
        return None if model is None else ModelKey(key.engine, model, key.compute_type)

    def engines(self) -> list[EngineName]:
        return ["faster-whisper", "openai-whisper"]
