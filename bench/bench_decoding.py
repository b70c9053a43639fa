"""Decoding choices on both engines: beam 1 vs 5, temperature fallback off vs on.

Loads tiny.en (the offline packs) on each engine, in this process, and transcribes four
clips with each choice through the worker's own engine classes (`Decoding`, as a job's
options become it):
- synthetic speech: a varied passage, and a repetitive one (the same three sentences
  four times), both read by espeak-ng from the texts below;
- real speech: jfk.flac (11 s) and jfk.flac three times in a row (33 s).
Every clip is under 60 s, so faster-whisper decodes one window at a time as the worker
does for such audio (its batched path, for longer audio, never falls back).
Prints x real time (audio seconds per wall second) and word error rate per clip and
choice, then per engine and choice over the synthetic and the real clips, and the load
average (the machine may be shared). Run: `python -m bench.bench_decoding`.
Options: `--engine NAME` and `--choice NAME` (repeatable: only those), `--repeats N`
(times each clip is transcribed; the fastest counts, which steadies speed on a busy
machine; WER with the fallback on varies between runs, since it samples).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.report import Figure, add_json_option, emit
from stream_workers import audio
from stream_workers.engines.base import ENGINES, Samples, Transcriber, TranscribeRequest
from stream_workers.engines.decoding import Decoding, fallback_schedule
from stream_workers.engines.loader import EngineLoader
from stream_workers.models.catalog import ModelCatalog
from tests.support.audio import JFK_FLAC, JFK_REFERENCE, repeat, speak, word_error_rate

VARIED_TEXT = (
    "The committee met on Tuesday morning to review the budget for the coming year. "
    "Several members argued that the library should stay open later in the evening, "
    "while others preferred to spend the money on new bicycles for the postal service. "
    "After a long discussion, the chair proposed a compromise: the library would open "
    "one extra hour on weekdays, and the remaining funds would repair the bridge near "
    "the old mill. The vote was seven to two, and the meeting ended shortly before noon."
)
REPETITIVE_SENTENCES = (
    "Please check the door before you leave the house. "
    "Turn off the lights in the kitchen. "
    "Remember to water the plants on the balcony. "
)
REPETITIVE_TEXT = REPETITIVE_SENTENCES * 4
MAX_SECONDS = 3600.0


@dataclass(frozen=True)
class Clip:
    name: str
    kind: str  # "synthetic" or "real"
    samples: Samples
    reference: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / 16_000


@dataclass(frozen=True)
class Choice:
    name: str
    decoding: Decoding


CHOICES = (
    Choice("beam 1, fallback off", Decoding(beam_size=1)),
    Choice("beam 5, fallback off", Decoding(beam_size=5)),
    Choice("beam 1, fallback on", Decoding(beam_size=1, temperatures=fallback_schedule(0.0))),
    Choice("beam 5, fallback on", Decoding(beam_size=5, temperatures=fallback_schedule(0.0))),
)


@dataclass(frozen=True)
class Measured:
    engine: str
    choice: str
    clip: Clip
    seconds: float
    wer: float


def make_clips(folder: Path) -> list[Clip]:
    def load(path: Path) -> Samples:
        return audio.decode(path, MAX_SECONDS)

    return [
        Clip(
            "espeak varied",
            "synthetic",
            load(speak(VARIED_TEXT, folder / "varied.wav")),
            VARIED_TEXT,
        ),
        Clip(
            "espeak repetitive",
            "synthetic",
            load(speak(REPETITIVE_TEXT, folder / "repetitive.wav")),
            REPETITIVE_TEXT,
        ),
        Clip("jfk", "real", load(JFK_FLAC), JFK_REFERENCE),
        Clip(
            "jfk x3",
            "real",
            load(repeat(JFK_FLAC, folder / "jfk3.flac", 3)),
            " ".join([JFK_REFERENCE] * 3),
        ),
    ]


def _quiet(_done: float, _total: float) -> None:
    return None


def measure(
    model: Transcriber, engine: str, clips: list[Clip], choices: list[Choice], repeats: int
) -> list[Measured]:
    # one warm-up, so the first timed clip does not pay for first-call set-up
    model.transcribe(clips[0].samples, TranscribeRequest(), _quiet)
    results = []
    for choice in choices:
        request = TranscribeRequest(decoding=choice.decoding)
        for clip in clips:
            best = float("inf")
            text = ""
            for _ in range(repeats):
                started = time.perf_counter()
                text = model.transcribe(clip.samples, request, _quiet).text
                best = min(best, time.perf_counter() - started)
            results.append(
                Measured(engine, choice.name, clip, best, word_error_rate(clip.reference, text))
            )
            print(f"  {engine:<15} {choice.name:<21} {clip.name:<18} done", flush=True)
    return results


def summarise(results: list[Measured]) -> list[Figure]:
    figures = []
    for engine in dict.fromkeys(r.engine for r in results):
        for choice in dict.fromkeys(r.choice for r in results):
            for kind in ("synthetic", "real"):
                rows = [
                    r
                    for r in results
                    if r.engine == engine and r.choice == choice and r.clip.kind == kind
                ]
                audio_s = sum(r.clip.seconds for r in rows)
                wall_s = sum(r.seconds for r in rows)
                words = sum(len(r.clip.reference.split()) for r in rows)
                errors = sum(r.wer * len(r.clip.reference.split()) for r in rows)
                label = f"{engine}, {choice}, {kind} speech"
                figures.append(Figure(f"{label}: speed", audio_s / wall_s, "x real time"))
                figures.append(Figure(f"{label}: WER", 100 * errors / words, "%"))
    return figures


def print_tables(results: list[Measured], figures: list[Figure]) -> None:
    print()
    print(f"{'engine':<15} {'choice':<21} {'clip':<18} {'audio s':>7} {'x RT':>6} {'WER %':>6}")
    for r in results:
        print(
            f"{r.engine:<15} {r.choice:<21} {r.clip.name:<18} {r.clip.seconds:7.1f}"
            f" {r.clip.seconds / r.seconds:6.1f} {100 * r.wer:6.1f}"
        )
    print()
    print("per engine and choice (WER weighted by reference words):")
    for index in range(0, len(figures), 2):
        speed, wer = figures[index], figures[index + 1]
        label = speed.name.removesuffix(": speed")
        print(f"  {label:<60} {speed.value:6.1f} x RT  WER {wer.value:5.1f} %")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", action="append", choices=ENGINES, default=None)
    parser.add_argument("--choice", action="append", choices=[c.name for c in CHOICES])
    parser.add_argument("--repeats", type=int, default=1)
    add_json_option(parser)
    args = parser.parse_args()
    engines = args.engine or list(ENGINES)
    choices = [c for c in CHOICES if args.choice is None or c.name in args.choice]
    load_before = os.getloadavg()
    results: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="whisperstream-bench-decoding-") as tmp:
        clips = make_clips(Path(tmp))
        loader = EngineLoader(ModelCatalog(None, Path(tmp) / "cache"), cpu_threads=2)
        for engine in engines:
            model = loader.load(loader.key_for(engine, "tiny.en"))
            try:
                results += measure(model, engine, clips, choices, args.repeats)
            finally:
                model.close()
    load_after = os.getloadavg()
    figures = summarise(results)
    print_tables(results, figures)
    print(
        f"load average (1, 5, 15 min): before {', '.join(f'{x:.2f}' for x in load_before)};"
        f" after {', '.join(f'{x:.2f}' for x in load_after)}; {os.cpu_count()} CPUs"
    )
    emit(args.json, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
