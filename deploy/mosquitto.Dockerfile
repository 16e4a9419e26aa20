# Mosquitto with the configuration, password file, ACL and national-profile plugin that
# `geowarn devices broker-config` generates from the device registry, built from the
# repository root (see docker-compose.yml).
#
# The broker image is the GeoWarn image plus Debian's Mosquitto, its plugin headers and a C
# compiler: broker-config reads the registry, writes passwd/acl/mosquitto.conf and compiles
# the plugin against the very broker that loads it (same libc, same plugin API), at every
# start (deploy/mosquitto/start.sh), so a restart picks up newly registered devices.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends mosquitto mosquitto-clients mosquitto-dev \
       libmosquitto-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN pip install -e .
# Runs as root: broker-config gives passwd, acl and the persistence folder to the
# `mosquitto` user (Debian's package creates it), and Mosquitto drops to that user.
CMD ["sh", "/app/deploy/mosquitto/start.sh"]
