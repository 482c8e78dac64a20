#!/usr/bin/env bash
# The main job: a local mosquitto on loopback and the bridge in the
# foreground, until Ctrl-C. Installs what is missing and builds first.
# JWT auth stays on: a random secret is made for this run and a token for the
# demo user is printed, with the commands to publish and to watch.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/deps.sh
cmake -S "$root" -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

MQTT_PORT=${MQTT_PORT:-1883}
HTTP_PORT=${HTTP_PORT:-8080}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
while port_busy "$MQTT_PORT"; do MQTT_PORT=$((MQTT_PORT + 1)); done
while port_busy "$HTTP_PORT"; do HTTP_PORT=$((HTTP_PORT + 1)); done

run=$(mktemp -d /tmp/mqtt-sse-bridge.XXXXXX)
cleanup() {
  [ -n "${broker:-}" ] && kill "$broker" 2>/dev/null && wait "$broker" 2>/dev/null
  rm -rf "$run"
}
trap cleanup EXIT

cat >"$run/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest file $run/mosquitto.log
CONF
mosquitto -c "$run/mosquitto.conf" &
broker=$!

openssl rand -hex 32 >"$run/jwt.secret"
chmod 600 "$run/jwt.secret"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
user=demo
now=$(date +%s)
header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
claims=$(printf '{"sub":"%s","iat":%d,"exp":%d}' "$user" "$now" $((now + 86400)) | b64url)
sig=$(printf '%s.%s' "$header" "$claims" |
      openssl dgst -sha256 -mac HMAC -macopt "key:$(cat "$run/jwt.secret")" -binary | b64url)
token="$header.$claims.$sig"

cat <<TXT

mqtt-sse-bridge: broker on 127.0.0.1:$MQTT_PORT, SSE on http://127.0.0.1:$HTTP_PORT

Watch as two devices of user '$user' (each in its own terminal):
  curl -N -H 'Authorization: Bearer $token' 'http://127.0.0.1:$HTTP_PORT/api/sse?deviceId=phone'
  curl -N 'http://127.0.0.1:$HTTP_PORT/api/sse?deviceId=laptop&token=$token'

Publish an event caused by the phone (only the laptop gets it):
  mosquitto_pub -h 127.0.0.1 -p $MQTT_PORT -q 1 -t sync/$user/timer \\
    -m '{"type":"started","payload":{"taskTitle":"Write report"},"sourceDeviceId":"phone"}'

Health and metrics: curl http://127.0.0.1:$HTTP_PORT/healthz ; curl http://127.0.0.1:$HTTP_PORT/metrics
Ctrl-C stops both.

TXT

build/bridge/mqtt-sse-bridge --mqtt_host 127.0.0.1 --mqtt_port "$MQTT_PORT" \
  --http_port "$HTTP_PORT" --jwt_secret_file "$run/jwt.secret" "$@" &
bridge=$!
trap 'kill -TERM $bridge 2>/dev/null' INT TERM
wait "$bridge" || true
wait "$bridge" 2>/dev/null || true
