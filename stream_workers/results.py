"""The result document written to the results bucket, and the summary a completed event carries."""

from __future__ import annotations

import math
from typing import Any

from schemas.events import ResultSummary
from stream_workers.engines.base import ModelKey, Segment, TranscriptResult, Word


def _word(word: Word) -> dict[str, Any]:
    return {
        "start": word.start,
        "end": word.end,
        "word": word.word,
        "probability": word.probability,
    }


def _segment(segment: Segment) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": segment.id,
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": list(segment.tokens),
        "avg_logprob": segment.avg_logprob,
        "no_speech_prob": segment.no_speech_prob,
    }
    if segment.words is not None:
        document["words"] = [_word(w) for w in segment.words]
    return document


def result_document(job_id: str, result: TranscriptResult, used: ModelKey) -> dict[str, Any]:
    document: dict[str, Any] = {
        "job_id": job_id,
        "text": result.text,
        "segments": [_segment(s) for s in result.segments],
        "language": result.language,
        "language_probability": result.language_probability,
        "duration": result.duration,
        "engine": used.engine,
        "model": used.model,
        "compute_type": used.compute_type,
    }
    words = result.words
    if words is not None and result.segments:
        document["words"] = [_word(w) for w in words]
    return document


def summary_of(document: dict[str, Any], result_uri: str) -> ResultSummary:
    """Built from the stored document, so a redelivered job reports exactly what was stored."""
    segments = document.get("segments") or []
    text = str(document.get("text") or "".join(str(s.get("text", "")) for s in segments).strip())
    logprobs = [float(s["avg_logprob"]) for s in segments if "avg_logprob" in s]
    confidence = math.exp(sum(logprobs) / len(logprobs)) if logprobs else None
    return ResultSummary(
        text=text,
        language=str(document.get("language") or "und"),
        duration_s=float(document.get("duration") or 0.0),
        word_count=len(text.split()),
        confidence=None if confidence is None else min(1.0, confidence),
        segment_count=len(segments),
        result_uri=result_uri,
    )
