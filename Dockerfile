# One image for orchestrator, agents and Flower; the command picks the role.
FROM python:3.11-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY config ./config
COPY tasks ./tasks
COPY orchestrator ./orchestrator
COPY worker_agent ./worker_agent
# Scripts shipped for the library (`lr library add library/persistence_check.sh`).
COPY library ./library
RUN pip install --no-cache-dir '.[flower]'
ENV LR_DATA_DIR=/data
CMD ["lr", "--help"]
