# The GeoWarn image: one image for `geowarn db upgrade`, `geowarn ingest`, `geowarn engine`
# and `geowarn run`. Built from the repository root (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    GEOWARN_DATA_DIR=/var/lib/geowarn

WORKDIR /app
COPY . .
# Editable install: the firmware contracts (catalogue.json) and the GIS examples live at the
# project root, outside the Python packages, and the settings find them next to the sources.
RUN pip install -e . \
    && useradd --system --home-dir /var/lib/geowarn --create-home geowarn
USER geowarn

CMD ["geowarn", "run"]
