#!/bin/sh
# One-shot security setup of the Compose Elasticsearch, as the elastic superuser:
#   - kibana_system gets its password (Kibana connects as this built-in user, never as elastic);
#   - the role `streamer_writer` reaches only the streamer-* indices and their templates, and
#     the user `streamer` (what the STREAMER services sign in as) has only that role.
# Safe to run again: every call is an idempotent PUT/POST.
#
# Environment: ES_URL (default http://elasticsearch:9200), ELASTIC_PASSWORD,
# KIBANA_SYSTEM_PASSWORD, STREAMER_ES_PASSWORD, ES_TIMEOUT (seconds, default 300),
# ES_INTERVAL (seconds between health checks, default 3).
# Exit status: 0 done, 1 a request failed (its answer is shown), 2 bad settings, 3 timeout.
# Needs only sh and curl; passwords reach curl on stdin (-K -), never on its command line.
set -eu

ES_URL=${ES_URL:-http://elasticsearch:9200}
ES_URL=${ES_URL%/}
ES_TIMEOUT=${ES_TIMEOUT:-300}
ES_INTERVAL=${ES_INTERVAL:-3}

say() { printf 'elasticsearch-setup: %s\n' "$*" >&2; }

case $ES_TIMEOUT$ES_INTERVAL in
  *[!0-9]*) say "error: ES_TIMEOUT and ES_INTERVAL must be whole seconds"; exit 2 ;;
esac
for name in ELASTIC_PASSWORD KIBANA_SYSTEM_PASSWORD STREAMER_ES_PASSWORD; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then say "error: $name is not set"; exit 2; fi
done

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

quote() { printf '%s' "$1" | sed 's/[\\"]/\\&/g'; }
# Prints the HTTP status (000 when nothing answered); the body goes to $TMP/body.
es() {
  method=$1 path=$2 body=${3:-}
  : >"$TMP/body"
  {
    echo 'silent'
    echo 'connect-timeout = 5'
    echo 'max-time = 30'
    printf 'user = "elastic:%s"\n' "$(quote "$ELASTIC_PASSWORD")"
  } | curl -K - -o "$TMP/body" -w '%{http_code}' -X "$method" "$ES_URL$path" \
      -H 'Content-Type: application/json' ${body:+--data-binary "@$body"} || true
}
# JSON bodies are written to files: passwords stay off every command line.
json_password() { printf '{"password":"%s"}' "$(quote "$1")" >"$TMP/$2"; }
must() {
  status=$(es "$@")
  case $status in
    200|201) ;;
    *) say "error: $1 $2 answered HTTP $status:"; cat "$TMP/body" >&2; echo >&2; exit 1 ;;
  esac
}

say "waiting for Elasticsearch at $ES_URL (up to ${ES_TIMEOUT}s)"
start=$(date +%s)
until [ "$(es GET '/_cluster/health?wait_for_status=yellow&timeout=5s')" = 200 ]; do
  if [ $(( $(date +%s) - start )) -ge "$ES_TIMEOUT" ]; then
    say "error: Elasticsearch at $ES_URL not ready after ${ES_TIMEOUT}s"
    cat "$TMP/body" >&2; echo >&2
    exit 3
  fi
  sleep "$ES_INTERVAL"
done

json_password "$KIBANA_SYSTEM_PASSWORD" kibana.json
must POST /_security/user/kibana_system/_password "$TMP/kibana.json"
say "kibana_system: password set"

cat >"$TMP/role.json" <<'JSON'
{
  "cluster": ["monitor", "manage_index_templates"],
  "indices": [
    {
      "names": ["streamer-*"],
      "privileges": ["create_index", "manage", "read", "view_index_metadata", "write"]
    }
  ]
}
JSON
must PUT /_security/role/streamer_writer "$TMP/role.json"

printf '{"password":"%s","roles":["streamer_writer"],"full_name":"STREAMER services"}' \
  "$(quote "$STREAMER_ES_PASSWORD")" >"$TMP/user.json"
must PUT /_security/user/streamer "$TMP/user.json"
say "streamer: user with role streamer_writer (streamer-* indices only)"
