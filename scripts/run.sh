#!/usr/bin/env bash
# The main job: one mosquitto on loopback serving MQTT and SSE (the plugin
# form, from conf/mosquitto.conf), in the foreground until Ctrl-C.
#   scripts/run.sh            the plugin form
#   scripts/run.sh --daemon   a plain mosquitto plus the mqtt-sse-bridge daemon
# Installs what is missing and builds first. JWT auth stays on: a random
# secret is made for this run, and a token for the demo user is printed with
# the commands to publish and to watch.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
form=plugin
[ "${1:-}" = "--daemon" ] && { form=daemon; shift; }

scripts/deps.sh
cmake -S "$root" -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

MQTT_PORT=${MQTT_PORT:-1883}
HTTP_PORT=${HTTP_PORT:-8080}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
while port_busy "$MQTT_PORT"; do MQTT_PORT=$((MQTT_PORT + 1)); done
while port_busy "$HTTP_PORT" || [ "$HTTP_PORT" = "$MQTT_PORT" ]; do HTTP_PORT=$((HTTP_PORT + 1)); done

run=$(mktemp -d /tmp/mqtt-sse-bridge.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

openssl rand -hex 32 >"$run/jwt.secret"
chmod 600 "$run/jwt.secret"
# Started as root, mosquitto runs as the user 'mosquitto': let it read this
# run's files (the secret stays readable by that user only).
if [ "$(id -u)" -eq 0 ] && id mosquitto >/dev/null 2>&1; then
  chmod 711 "$run"
  chown mosquitto "$run/jwt.secret"
fi

# conf/mosquitto.conf with this run's ports and absolute paths.
sed -e "s|^listener 1883 |listener $MQTT_PORT |" \
    -e "s|^plugin_opt_http_port .*|plugin_opt_http_port $HTTP_PORT|" \
    -e "s|build/jwt.secret|$run/jwt.secret|" \
    -e "s|^plugin build/|plugin $root/build/|" \
    -e "s|^acl_file conf/|acl_file $root/conf/|" \
    conf/mosquitto.conf >"$run/mosquitto.conf"
if [ "$form" = daemon ]; then
  sed -i -e '/^plugin/d' "$run/mosquitto.conf"
fi

if [ "$form" = daemon ]; then
  stops="Ctrl-C stops both mosquitto and the daemon; if either ends, the other is stopped too."
else
  stops="Ctrl-C stops mosquitto (and with it the plugin)."
fi

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
user=demo
now=$(date +%s)
header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
claims=$(printf '{"sub":"%s","iat":%d,"exp":%d}' "$user" "$now" $((now + 86400)) | b64url)
sig=$(printf '%s.%s' "$header" "$claims" |
      openssl dgst -sha256 -mac HMAC -macopt "key:$(cat "$run/jwt.secret")" -binary | b64url)
token="$header.$claims.$sig"

cat <<TXT

mqtt-sse-bridge ($form form): MQTT on 127.0.0.1:$MQTT_PORT, SSE on http://127.0.0.1:$HTTP_PORT

Open the demo as two devices of user '$user' (two browser windows):
  http://127.0.0.1:$HTTP_PORT/#device=phone&token=$token
  http://127.0.0.1:$HTTP_PORT/#device=laptop&token=$token

Or watch from a terminal:
  curl -N -H 'Authorization: Bearer $token' 'http://127.0.0.1:$HTTP_PORT/api/sse?deviceId=phone'
  curl -N 'http://127.0.0.1:$HTTP_PORT/api/sse?deviceId=laptop&token=$token'

Publish an event caused by the phone (only the laptop gets it):
  mosquitto_pub -h 127.0.0.1 -p $MQTT_PORT -q 1 -t sync/$user/timer \\
    -m '{"type":"started","payload":{"taskTitle":"Write report"},"sourceDeviceId":"phone"}'

Health and metrics: curl http://127.0.0.1:$HTTP_PORT/healthz ; curl http://127.0.0.1:$HTTP_PORT/metrics
$stops

TXT

mosquitto -c "$run/mosquitto.conf" &
broker=$!
pids+=($broker)
if [ "$form" = daemon ]; then
  # The daemon starts once the broker listens, so that its first connection
  # attempt succeeds (up to 10 s; mosquitto's own log says why it did not).
  for _ in $(seq 100); do
    port_busy "$MQTT_PORT" && break
    kill -0 "$broker" 2>/dev/null || break
    sleep 0.1
  done
  if ! port_busy "$MQTT_PORT"; then
    echo "mosquitto is not listening on 127.0.0.1:$MQTT_PORT (see its log above); stopping" >&2
    exit 1
  fi
  build/bridge/mqtt-sse-bridge --mqtt_host 127.0.0.1 --mqtt_port "$MQTT_PORT" \
    --http_port "$HTTP_PORT" --jwt_secret_file "$run/jwt.secret" "$@" &
  pids+=($!)
fi
status=0
wait -n "${pids[@]}" || status=$?
if [ "$form" = daemon ]; then
  if kill -0 "$broker" 2>/dev/null; then
    echo "mqtt-sse-bridge ended (status $status); stopping mosquitto" >&2
  else
    echo "mosquitto ended (status $status); stopping mqtt-sse-bridge" >&2
  fi
fi
