"""faster-whisper on long audio: batched inference against one window at a time.

Makes about five minutes of speech (jfk.flac repeated), loads tiny.en once (int8, CPU)
and transcribes the same audio with the plain `WhisperModel.transcribe` and with
`BatchedInferencePipeline` (the worker uses the latter for audio of 60 s or more).
Prints audio seconds per wall second for each. Run: `python -m bench.bench_batching`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from faster_whisper import BatchedInferencePipeline, WhisperModel, decode_audio

from bench.report import Figure, add_json_option, emit
from stream_workers.models.catalog import ModelCatalog
from tests.support.audio import JFK_FLAC


def long_audio(directory: Path, repeats: int) -> Path:
    target = directory / "long.wav"
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    command = [ffmpeg, "-loglevel", "error", "-y", "-stream_loop", str(repeats - 1)]
    subprocess.run(
        [*command, "-i", str(JFK_FLAC), "-ar", "16000", "-ac", "1", str(target)], check=True
    )
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=27, help="copies of the 11 s clip")
    parser.add_argument("--batch-size", type=int, default=8)
    add_json_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="whisperstream-bench-batching-") as tmp:
        audio = decode_audio(str(long_audio(Path(tmp), args.repeats)))
        seconds = len(audio) / 16000
        path = ModelCatalog(None, Path(tmp) / "cache").resolve("faster-whisper", "tiny.en")
        model = WhisperModel(str(path), device="cpu", compute_type="int8")
        batched = BatchedInferencePipeline(model)

        def plain() -> None:
            # The same decoding choices on both sides: VAD-cut windows, no previous text
            # as prompt, and no temperature fallback (repeated jfk.flac is so repetitive
            # that the compression-ratio check would otherwise re-decode most windows).
            segments, _ = model.transcribe(
                audio,
                beam_size=5,
                language="en",
                vad_filter=True,
                condition_on_previous_text=False,
                temperature=0.0,
            )
            list(segments)

        def in_batches() -> None:
            segments, _ = batched.transcribe(
                audio,
                batch_size=args.batch_size,
                beam_size=5,
                language="en",
                vad_filter=True,
                temperature=0.0,
            )
            list(segments)

        timings = {}
        for name, run in (("one window at a time", plain), ("batched", in_batches)):
            started = time.perf_counter()
            run()
            timings[name] = time.perf_counter() - started
    print(f"faster-whisper tiny.en int8, {seconds:.0f} s of speech, batch size {args.batch_size}")
    for name, took in timings.items():
        print(f"  {name:<22} {took:6.1f} s  {seconds / took:5.1f} x real time")
    figures = [
        Figure(f"faster-whisper, {name}", seconds / took, "x real time")
        for name, took in timings.items()
    ]
    emit(args.json, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
