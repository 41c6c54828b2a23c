#!/bin/sh
# Creates rollgate's namespace once the Temporal cluster serves (the plain server image creates
# none). Run by the temporal-namespace job in docker-compose.yml with the admin-tools image's
# `temporal` CLI. Idempotent: an existing namespace is left as it is. rollgate's search attributes
# are registered by the worker at start (src/temporal/connection.ts).
#
# Environment: TEMPORAL_ADDRESS, NAMESPACE, NAMESPACE_RETENTION.
set -eu

tries=0
until temporal operator cluster health --address "$TEMPORAL_ADDRESS" 2>/dev/null | grep -q SERVING; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    echo "temporal-namespace: $TEMPORAL_ADDRESS not serving after 120 s" >&2
    exit 1
  fi
  sleep 2
done

if temporal operator namespace describe --namespace "$NAMESPACE" --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; then
  echo "temporal-namespace: $NAMESPACE exists"
else
  temporal operator namespace create --namespace "$NAMESPACE" --retention "$NAMESPACE_RETENTION" --address "$TEMPORAL_ADDRESS"
  echo "temporal-namespace: created $NAMESPACE (retention $NAMESPACE_RETENTION)"
fi
