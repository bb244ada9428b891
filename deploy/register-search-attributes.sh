#!/bin/sh
# Register Chorus's custom search attributes on a Temporal namespace.
#
# Every chain run upserts ChorusChain, ChorusStatus and ChorusCostUsd
# (workflows/search_attributes.py); on a server that does not know them, a
# run's workflow task fails. The embedded dev stack passes them to
# `temporal server start-dev`; a real cluster needs them registered once, which
# is what this script does. docker-compose.yml runs it as the one-shot
# `temporal-setup` service (temporalio/admin-tools image) before the API and
# the workers start; by hand, against any cluster the `temporal` CLI reaches:
#
#   TEMPORAL_ADDRESS=temporal.example:7233 NAMESPACE=default sh register-search-attributes.sh
#
# Idempotent: an attribute that exists with the right type is left alone; one
# that exists with another type stops the script with a message (a type cannot
# be changed in place).
set -eu

address="${TEMPORAL_ADDRESS:-temporal:7233}"
namespace="${NAMESPACE:-default}"
attempts="${WAIT_ATTEMPTS:-90}"
interval="${WAIT_INTERVAL_S:-2}"

# NAME=Type pairs; tests/test_compose.py checks that they match
# workflows/search_attributes.py.
attributes="ChorusChain=Keyword ChorusStatus=Keyword ChorusCostUsd=Double"

# auto-setup creates the namespace in the background after the server starts,
# so wait for the namespace itself, not just for the frontend port.
tries=0
until temporal operator namespace describe --address "$address" --namespace "$namespace" \
    > /dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge "$attempts" ]; then
    echo "register-search-attributes: namespace '$namespace' is not available on" \
      "$address after $attempts attempts" >&2
    exit 1
  fi
  sleep "$interval"
done

existing="$(temporal operator search-attribute list --address "$address" --namespace "$namespace")"

for pair in $attributes; do
  name="${pair%%=*}"
  type="${pair#*=}"
  have="$(printf '%s\n' "$existing" | awk -v n="$name" '$1 == n { print $2; exit }')"
  if [ -z "$have" ]; then
    temporal operator search-attribute create --address "$address" --namespace "$namespace" \
      --name "$name" --type "$type"
    echo "register-search-attributes: $name ($type) registered on namespace '$namespace'"
  elif [ "$have" = "$type" ]; then
    echo "register-search-attributes: $name ($type) already registered"
  else
    echo "register-search-attributes: $name exists on namespace '$namespace' with type" \
      "$have, but Chorus needs $type" >&2
    exit 1
  fi
done
