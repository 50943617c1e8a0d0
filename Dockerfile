# Engram: one image for `engram api`, `engram worker` and `engram migrate`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # The embedding model ships inside a Python package: never reach for the Hub at runtime.
    HF_HUB_OFFLINE=1 \
    ENGRAM_HOME=/var/lib/engram \
    ENGRAM_MODEL_CACHE=/opt/engram/model-cache

# torch first, from the CPU index: installed later by the project's resolver it would pull
# a multi-GB CUDA build. Its own layer, so code changes do not reinstall it.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /src
# the client first: the server's CLI (engram ingest, engram status) speaks through it
COPY clients/python/ clients/python/
RUN pip install ./clients/python
COPY pyproject.toml README.md ./
COPY service/ service/
COPY worker/ worker/
COPY models/ models/
COPY migrations/ migrations/
RUN pip install . && rm -rf /src
# Export the model to ONNX once, at build time: containers start without exporting.
RUN python -c "from models.embedding.local import LocalEmbedder; from models.settings import Settings; \
from models.embedding.spaces import MINILM_384; LocalEmbedder(MINILM_384, Settings.from_env().encoder).load()"

RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/engram engram
USER engram
# Run from the home, not the source tree: imports resolve to the installed package.
WORKDIR /var/lib/engram

EXPOSE 8000
CMD ["engram", "api"]
