# Mosquitto 2 with GeoWarn's configuration (ingest/mosquitto.conf) and its national-profile
# plugin (ingest/mosquitto_plugin/geowarn_national.c), built from the repository root.
#
# The plugin is compiled in a throwaway Alpine stage: eclipse-mosquitto:2 is Alpine-based and
# has no compiler; Alpine's mosquitto-dev ships the same 2.x plugin API (version 5), and the
# .so links against nothing but musl and symbols the broker itself exports.
FROM alpine:3.20 AS plugin
RUN apk add --no-cache build-base mosquitto-dev
COPY ingest/mosquitto_plugin/geowarn_national.c /src/
RUN cc -O2 -Wall -Wextra -Werror -fPIC -shared -o /src/geowarn_national.so \
    /src/geowarn_national.c

FROM eclipse-mosquitto:2
COPY --from=plugin /src/geowarn_national.so /mosquitto/plugins/geowarn_national.so
COPY ingest/mosquitto.conf /mosquitto/config/geowarn.conf
COPY deploy/mosquitto/compose.conf /mosquitto/config/compose.conf
# One file, shipped settings first: what the tests run against is what is deployed.
RUN cat /mosquitto/config/geowarn.conf /mosquitto/config/compose.conf \
    > /mosquitto/config/mosquitto.conf
CMD ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
