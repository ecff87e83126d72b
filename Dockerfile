# soloops in a container. Build:  docker build -t soloops .
# Run:   docker run -d --name soloops --env-file soloops.env -v soloops-home:/home/soloops/data soloops
# Logs:  docker logs soloops (stderr), and logs/soloops.log inside the volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    SOLOOPS_HOME=/home/soloops/data

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin soloops

WORKDIR /opt/soloops
COPY constraints.txt ./
# torch first, the CPU build pinned by constraints.txt: otherwise sentence-transformers
# pulls a CUDA build of several GB.
RUN python -m pip install -c constraints.txt \
        --extra-index-url https://download.pytorch.org/whl/cpu torch
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY agents ./agents
COPY memory ./memory
COPY connectors ./connectors
COPY config ./config
RUN python -m pip install -c constraints.txt .

USER soloops
RUN mkdir -m 0700 -p /home/soloops/data
VOLUME ["/home/soloops/data"]
# One process per home: run one container per volume.
ENTRYPOINT ["soloops"]
CMD ["run"]
