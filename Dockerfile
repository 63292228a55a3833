# One image, three commands:
#   docker run -p 8000:8000 -e NUDGE_REDIS_URL=... -e NUDGE_WRITE_KEYS=... -e NUDGE_API_KEYS=... \
#              -e NUDGE_ADMIN_KEYS=... nudge                       # the API (default command)
#   docker run -v nudge-recovery:/data -p 9464:9464 -e NUDGE_REDIS_URL=... nudge nudge dataflow
#              (its Prometheus metrics on port 9464; the API's on 8000/metrics)
#   docker run -e NUDGE_REDIS_URL=... -e NUDGE_WEBHOOK_URLS=... -e NUDGE_WEBHOOK_SECRET=... \
#              nudge nudge webhooks                                # triggers to your webhooks
FROM python:3.12-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY config ./config
COPY models ./models
COPY dataflows ./dataflows
COPY api ./api
COPY cli ./cli
RUN python -m venv /opt/nudge && /opt/nudge/bin/pip install .

FROM python:3.12-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /data --create-home nudge
COPY --from=build /opt/nudge /opt/nudge
ENV PATH=/opt/nudge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NUDGE_API_HOST=0.0.0.0 \
    NUDGE_API_PORT=8000 \
    NUDGE_RECOVERY_DIR=/data/recovery \
    NUDGE_METRICS_PORT=9464 \
    NUDGE_LOG_FORMAT=json
USER nudge
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000 9464
CMD ["nudge", "api"]
