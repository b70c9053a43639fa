"""openai-whisper (PyTorch): fp32 on CPU, fp16 on CUDA."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stream_workers.engines.base import (
    SAMPLE_RATE,
    ModelKey,
    Samples,
    Segment,
    SegmentCallback,
    TranscribeRequest,
    TranscriptResult,
    Word,
)
from stream_workers.engines.decoding import BEST_OF, openai_whisper_arguments
from stream_workers.engines.vad import keep_speech
from stream_workers.engines.windows import WindowTranscript, split_at_timestamps
from stream_workers.errors import InvalidOptionsError
from stream_workers.models.convert import ALIGNMENT_HEADS_KEY

WINDOW_SECONDS = 30.0


def default_compute_type(device: str) -> str:
    return "float16" if device == "cuda" else "float32"


class OpenAIWhisperTranscriber:
    def __init__(
        self, key: ModelKey, checkpoint: Path, *, device: str = "cpu", cpu_threads: int = 0
    ) -> None:
        import torch  # noqa: PLC0415 - heavy imports belong to the engine, not to import time
        import whisper  # noqa: PLC0415

        if cpu_threads > 0:
            # Process-wide in PyTorch; the worker gives every slot the same share of the CPUs.
            torch.set_num_threads(cpu_threads)
        self.key = key
        self._device = device
        self._model: Any = whisper.load_model(str(checkpoint), device=device)
        # Checkpoints we converted carry their alignment heads (whisper only knows its own).
        stored = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
        heads = stored.get(ALIGNMENT_HEADS_KEY) if isinstance(stored, dict) else None
        if isinstance(heads, bytes):
            self._model.set_alignment_heads(heads)
        del stored
        # whisper reads its tiktoken file without closing it (a ResourceWarning); its tokenizer
        # is cached per process, so building it once here keeps the leak to this one place.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            whisper.tokenizer.get_tokenizer(
                self._model.is_multilingual, num_languages=self._model.num_languages
            )

    def transcribe(
        self, audio: Samples, request: TranscribeRequest, on_segment: SegmentCallback
    ) -> TranscriptResult:
        import whisper  # noqa: PLC0415

        duration = len(audio) / SAMPLE_RATE
        decoding = request.decoding
        language = request.language
        if not self._model.is_multilingual:
            if language not in (None, "en"):
                raise InvalidOptionsError(f"{self.key.model} is English-only, not {language!r}")
            language = "en"
        speech = keep_speech(audio) if decoding.vad_filter else None
        if speech is not None:
            audio = speech.samples
        # progress is measured on what is decoded: the speech alone when VAD cut the rest
        probe = _WindowProbe(self._model, len(audio) / SAMPLE_RATE, on_segment)
        kwargs: dict[str, Any] = {
            "language": language,
            "task": request.task.value,
            **openai_whisper_arguments(decoding),
            "fp16": self._device == "cuda",
            "verbose": None,
        }
        with probe:
            try:
                result = whisper.transcribe(self._model, audio, **kwargs)
            except (ValueError, KeyError) as exc:
                raise InvalidOptionsError(str(exc)) from exc
        segments = tuple(_segment(raw, decoding.word_timestamps) for raw in result["segments"])
        if speech is not None:
            segments = speech.restore(segments)
        on_segment(duration, duration)
        return TranscriptResult(
            segments=segments,
            language=str(result["language"]),
            language_probability=probe.language_probability(str(result["language"])),
            duration=duration,
        )

    def transcribe_windows(
        self, windows: Sequence[Samples], request: TranscribeRequest
    ) -> list[WindowTranscript]:
        """Decode `windows` (of any jobs) together: one batched decode of their stacked mels.

        `whisper.decode` takes a batch of 30 s log-mel windows; each comes back as tokens
        with timestamp tokens, cut into segments here as `whisper.transcribe` cuts them.
        """
        if not windows:
            return []
        import torch  # noqa: PLC0415
        import whisper  # noqa: PLC0415

        if not self._model.is_multilingual and request.language not in (None, "en"):
            raise InvalidOptionsError(f"{self.key.model} is English-only, not {request.language!r}")
        decoding = request.decoding
        temperature = decoding.temperatures[0]
        sampling = temperature > 0
        options = whisper.DecodingOptions(
            task=request.task.value,
            language=request.language or "en",
            temperature=temperature,
            best_of=BEST_OF if sampling else None,
            beam_size=None if sampling else decoding.beam_size,
            patience=None if sampling else 1.0,
            prompt=decoding.initial_prompt,
            fp16=self._device == "cuda",
        )
        n_mels = self._model.dims.n_mels
        mels = [
            whisper.log_mel_spectrogram(
                window, n_mels, padding=whisper.audio.N_SAMPLES, device=self._model.device
            )[:, : whisper.audio.N_FRAMES]
            for window in windows
        ]
        tokenizer = whisper.tokenizer.get_tokenizer(
            self._model.is_multilingual,
            num_languages=self._model.num_languages,
            language=options.language,
            task=options.task,
        )
        try:
            results = _batched_task(self._model, options).run(torch.stack(mels))
        except (ValueError, KeyError) as exc:
            raise InvalidOptionsError(str(exc)) from exc
        out = []
        for window, result in zip(windows, results, strict=True):
            duration = len(window) / SAMPLE_RATE
            spans, resume_at = split_at_timestamps(
                result.tokens, tokenizer.timestamp_begin, duration
            )
            segments = tuple(
                Segment(
                    id=index,
                    # the mel is padded to 30 s: times may point into the padding
                    start=min(span.start, duration),
                    end=min(span.end, duration),
                    text=tokenizer.decode(
                        [t for t in span.tokens if t < tokenizer.timestamp_begin]
                    ),
                    tokens=span.tokens,
                    avg_logprob=float(result.avg_logprob),
                    no_speech_prob=float(result.no_speech_prob),
                )
                for index, span in enumerate(spans)
            )
            out.append(WindowTranscript(segments, resume_at))
        return out

    def close(self) -> None:
        del self._model


class _WindowProbe:
    """Wraps the model's decode/detect_language for the time of one call.

    openai-whisper's `transcribe` has no per-segment hook, but it calls `model.decode`
    once per 30 s window: that is where progress is reported and a cancel can stop it.
    """

    def __init__(self, model: Any, duration: float, on_segment: SegmentCallback) -> None:
        self._model = model
        self._duration = duration
        self._on_segment = on_segment
        self._windows = 0
        self._probs: dict[str, float] | None = None

    def __enter__(self) -> None:
        model = self._model
        decode: Callable[..., Any] = type(model).decode
        detect: Callable[..., Any] = type(model).detect_language

        def probed_decode(mel: Any, options: Any) -> Any:
            self._on_segment(min(self._windows * WINDOW_SECONDS, self._duration), self._duration)
            result = decode(model, mel, options)
            self._windows += 1
            return result

        def probed_detect(mel: Any, tokenizer: Any = None) -> Any:
            tokens, probs = detect(model, mel, tokenizer)
            if isinstance(probs, dict):
                self._probs = probs
            return tokens, probs

        model.decode = probed_decode
        model.detect_language = probed_detect

    def __exit__(self, *_: object) -> None:
        del self._model.decode
        del self._model.detect_language

    def language_probability(self, language: str) -> float:
        if self._probs is None:
            return 1.0  # language given by the request, or an English-only model
        return float(self._probs.get(language, 0.0))


def _segment(raw: dict[str, Any], with_words: bool) -> Segment:
    words = None
    if with_words:
        words = tuple(
            Word(float(w["start"]), float(w["end"]), str(w["word"]), float(w["probability"]))
            for w in raw.get("words", [])
        )
    return Segment(
        id=int(raw["id"]),
        start=float(raw["start"]),
        end=float(raw["end"]),
        text=str(raw["text"]),
        tokens=tuple(int(t) for t in raw["tokens"]),
        avg_logprob=float(raw["avg_logprob"]),
        no_speech_prob=float(raw["no_speech_prob"]),
        words=words,
    )


def _batched_task(model: Any, options: Any) -> Any:
    """`whisper.decode`'s task, fixed for beam search over several windows.

    This openai-whisper repeats each window's tokens once per beam but not its encoded
    audio, so a batch of more than one window fails in cross-attention. The audio is
    repeated the same way here; language detection still sees one row per window.
    """
    from whisper.decoding import DecodingTask  # noqa: PLC0415

    class BatchedDecodingTask(DecodingTask):  # type: ignore[misc]
        def _get_audio_features(self, mel: Any) -> Any:
            features = super()._get_audio_features(mel)
            return features.repeat_interleave(self.n_group, dim=0)

        def _detect_language(self, audio_features: Any, tokens: Any) -> Any:
            return super()._detect_language(audio_features[:: self.n_group], tokens)

    return BatchedDecodingTask(model, options)
