#!/bin/sh
# One-shot provisioning of the STREAMER dashboard: wait until Kibana is available, then import
# dashboard.ndjson through the saved-objects API (Kibana 8; the legacy dashboards API the
# original used is gone). Safe to run again: the import overwrites the same object ids.
#
# Environment:
#   KIBANA_URL        base URL of Kibana (default http://kibana:5601)
#   KIBANA_SPACE      import into this space instead of the default one (optional)
#   KIBANA_USER       basic-auth user (optional; with KIBANA_PASSWORD)
#   KIBANA_PASSWORD   basic-auth password (never put on the command line: fed to curl on stdin)
#   KIBANA_TIMEOUT    seconds to wait for Kibana to become available (default 300)
#   KIBANA_INTERVAL   seconds between status checks (default 5)
#   DASHBOARD_FILE    the ndjson to import (default: dashboard.ndjson beside this script)
#
# Exit status: 0 imported, 1 the import failed (the response is shown), 2 bad settings,
# 3 Kibana did not become available in time. Needs only sh and curl.
set -eu

KIBANA_URL=${KIBANA_URL:-http://kibana:5601}
KIBANA_URL=${KIBANA_URL%/}
KIBANA_TIMEOUT=${KIBANA_TIMEOUT:-300}
KIBANA_INTERVAL=${KIBANA_INTERVAL:-5}
DASHBOARD_FILE=${DASHBOARD_FILE:-$(dirname "$0")/dashboard.ndjson}
BASE=$KIBANA_URL
if [ -n "${KIBANA_SPACE:-}" ]; then
  BASE=$KIBANA_URL/s/$KIBANA_SPACE
fi

say() { printf 'kibana-setup: %s\n' "$*" >&2; }

case $KIBANA_TIMEOUT$KIBANA_INTERVAL in
  *[!0-9]*) say "error: KIBANA_TIMEOUT and KIBANA_INTERVAL must be whole seconds"; exit 2 ;;
esac
if [ ! -r "$DASHBOARD_FILE" ]; then
  say "error: cannot read $DASHBOARD_FILE"
  exit 2
fi
if [ -n "${KIBANA_USER:-}" ] && [ -z "${KIBANA_PASSWORD:-}" ]; then
  say "error: KIBANA_USER is set but KIBANA_PASSWORD is not"
  exit 2
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

# curl reads its options from stdin (-K -): the password never shows in `ps`.
curl_config() {
  echo 'silent'
  echo 'show-error'
  echo 'connect-timeout = 5'
  echo 'max-time = 60'
  if [ -n "${KIBANA_USER:-}" ]; then
    printf 'user = "%s:%s"\n' "$(quote "$KIBANA_USER")" "$(quote "$KIBANA_PASSWORD")"
  fi
}
quote() { printf '%s' "$1" | sed 's/[\\"]/\\&/g'; }

# Prints the HTTP status (000 when there was no answer); the body goes to $TMP/body.
kibana() {
  : >"$TMP/body"
  curl_config | curl -K - -o "$TMP/body" -w '%{http_code}' "$@" || true
}
# True when the status JSON in $TMP/body says the whole of Kibana is available.
available() {
  tr -d ' \n\r\t' <"$TMP/body" | grep -o '"overall":{[^}]*}' | grep -q '"level":"available"'
}

say "waiting for Kibana at $KIBANA_URL (up to ${KIBANA_TIMEOUT}s)"
start=$(date +%s)
while :; do
  status=$(kibana "$KIBANA_URL/api/status" 2>"$TMP/error")
  if [ "$status" = 200 ] && available; then
    break
  fi
  case $status in
    401|403)
      say "error: Kibana refused the credentials (HTTP $status): set KIBANA_USER/KIBANA_PASSWORD"
      cat "$TMP/body" >&2; echo >&2
      exit 1 ;;
  esac
  if [ $(( $(date +%s) - start )) -ge "$KIBANA_TIMEOUT" ]; then
    say "error: Kibana at $KIBANA_URL not available after ${KIBANA_TIMEOUT}s (last HTTP status $status)"
    cat "$TMP/error" >&2
    head -c 2000 "$TMP/body" >&2 2>/dev/null || true; echo >&2
    exit 3
  fi
  sleep "$KIBANA_INTERVAL"
done

say "importing $DASHBOARD_FILE into $BASE"
status=$(kibana -X POST "$BASE/api/saved_objects/_import?overwrite=true" \
  -H 'kbn-xsrf: true' -F "file=@$DASHBOARD_FILE;filename=streamer-dashboard.ndjson;type=application/ndjson" 2>"$TMP/error")
body=$(cat "$TMP/body")
if [ "$status" != 200 ] || ! printf '%s' "$body" | tr -d ' \n\r\t' | grep -q '"success":true'; then
  say "error: import failed (HTTP $status):"
  cat "$TMP/error" >&2
  printf '%s\n' "$body" >&2
  exit 1
fi
count=$(printf '%s' "$body" | tr -d ' \n\r\t' | sed -n 's/.*"successCount":\([0-9]*\).*/\1/p')
say "imported ${count:-?} saved objects"
