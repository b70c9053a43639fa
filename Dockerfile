# syntax=docker/dockerfile:1
# One image for every whisperstream service; the command picks the service:
#   docker run IMAGE api | worker | projector | notifier | migrate | topics apply | buckets apply
# Build arguments (docs/deploy.md):
#   TORCH_VARIANT  cpu (default) or a CUDA build of torch, e.g. cu128 (the GPU image)
#   TORCH_VERSION  the torch release the project is tested with (the Makefile's TORCH_SPEC)
#   MODEL_PACKS    "models" (default) bakes in the offline packs (tiny.en, base);
#                  empty leaves them out, for an image that reads models only from
#                  WHISPER_MODEL_DIR (a mounted volume)
# Models of your own are baked in from a build context named baked-models, a folder of
# CTranslate2 model folders and/or openai-whisper .pt files:
#   docker build --build-context baked-models=/path/to/models -t whisperstream .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# empty unless replaced with --build-context baked-models=DIR
FROM scratch AS baked-models

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG MODEL_PACKS=models
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the index of the wanted variant, so the project's install keeps it
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
        "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY whisperstream ./whisperstream
COPY producer_api ./producer_api
COPY stream_workers ./stream_workers
COPY schemas ./schemas
COPY storage ./storage
COPY db ./db
COPY ops ./ops
COPY notifier ./notifier
RUN pip install "/src${MODEL_PACKS:+[$MODEL_PACKS]}"

FROM ${PYTHON_IMAGE} AS runtime
# ffmpeg repairs audio PyAV cannot decode; tini reaps the engines' child processes and
# hands SIGTERM to the service, which drains (SHUTDOWN_GRACE_S) before exiting
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg tini \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --create-home --home-dir /home/whisperstream whisperstream \
    && mkdir -p /var/lib/whisperstream /models \
    && chown whisperstream:whisperstream /var/lib/whisperstream
COPY --from=build /opt/venv /opt/venv
COPY --from=baked-models . /models/
# CUDA images: CTranslate2 (faster-whisper) loads cuBLAS and cuDNN from the wheels torch
# brought in; the folders do not exist in the CPU image, where this changes nothing
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/nvidia/cublas/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cudnn/lib \
    WHISPERSTREAM_STATE_DIR=/var/lib/whisperstream \
    WHISPER_CACHE_DIR=/var/lib/whisperstream/models \
    WHISPER_MODEL_DIR=/models \
    API_HOST=0.0.0.0 \
    API_PORT=8000
USER 10001
WORKDIR /home/whisperstream
EXPOSE 8000
VOLUME ["/var/lib/whisperstream"]
# the API by default; a worker, the projector or the notifier set WHISPERSTREAM_PROBE to
# "file PATH MAX_AGE_S" with WHISPERSTREAM_HEARTBEAT_FILE=PATH (deploy/compose.yaml)
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "whisperstream.probe"]
ENTRYPOINT ["tini", "--", "whisperstream"]
CMD ["api"]
