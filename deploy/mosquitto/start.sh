#!/bin/sh
# The broker container's start (deploy/mosquitto.Dockerfile): generate the broker's files
# from the device registry, owned by the broker's user, then run Mosquitto on them.
#   GEOWARN_DATABASE_URL   the registry (required)
#   GEOWARN_MQTT_PASSWORD  the gateways' broker account password (required)
#   BROKER_DIR             where the files go (default /mosquitto/config, a volume: it also
#                          holds the persistence folder, so sessions survive restarts)
#   BROKER_LISTEN          address:port (default 0.0.0.0:1883)
#   BROKER_USER            the user Mosquitto drops to (default mosquitto)
set -eu
: "${GEOWARN_DATABASE_URL:?the broker reads the device registry}"
: "${GEOWARN_MQTT_PASSWORD:?the gateways' broker account needs a password}"
dir=${BROKER_DIR:-/mosquitto/config}
mkdir -p "$dir"
geowarn devices broker-config "$dir" --listen "${BROKER_LISTEN:-0.0.0.0:1883}" \
    --broker-user "${BROKER_USER:-mosquitto}"
exec mosquitto -c "$dir/mosquitto.conf"
