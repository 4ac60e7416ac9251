FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY labelstore labelstore
COPY events events
COPY schemas schemas
COPY processors processors
COPY materializers materializers
COPY offline offline
COPY examples examples
RUN pip install --no-cache-dir ".[postgres]"
ENTRYPOINT ["labelstore"]
