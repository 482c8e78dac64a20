#!/usr/bin/env bash
# The SvelteKit example with everything it needs, in the foreground until Ctrl-C:
# a mosquitto broker, the mqtt-sse-bridge daemon (or the plugin inside the broker)
# and the app, on free loopback ports, with a JWT secret made for this run.
#   examples/sveltekit/run.sh            daemon form; the app built (vite build) and run with node
#   examples/sveltekit/run.sh --plugin   the plugin form: one mosquitto holding the bridge
#   examples/sveltekit/run.sh --dev      the app under `vite dev` (reloads as you edit)
# Builds the C tree and installs the npm packages first when they are missing
# (the Debian packages through scripts/deps.sh, as root). Node.js 20 or later.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

form=daemon
app=build
for arg in "$@"; do
  case "$arg" in
    --plugin) form=plugin ;;
    --daemon) form=daemon ;;
    --dev) app=dev ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $arg (try --help)" >&2; exit 2 ;;
  esac
done

command -v node >/dev/null || { echo "node not found: the example wants Node.js 20 or later" >&2; exit 1; }
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] ||
  { echo "node $(node --version) is too old: the example wants Node.js 20 or later" >&2; exit 1; }

# ---- the bridge and the broker ------------------------------------------------------------
bridge_bin=${SB_BRIDGE_BIN:-$root/build/bridge/mqtt-sse-bridge}
plugin_so=${SB_PLUGIN_SO:-$root/build/plugin/mosquitto_sse.so}
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
need=$bridge_bin
[ "$form" = plugin ] && need=$plugin_so
if [ ! -x "$mosquitto" ] || [ ! -f "$need" ]; then
  if [ ! -x "$mosquitto" ] || ! command -v cmake >/dev/null; then
    "$root/scripts/deps.sh"
    mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  fi
  echo "== building the bridge (build/)"
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$root/build" -j"$(nproc)" >/dev/null
fi

# ---- the npm packages -----------------------------------------------------------------------
# The example takes mqtt-sse-bridge from ../../clients/js (a link): that folder's own
# dependencies (mqtt.js for mqtt-sse-bridge/server) come from its lockfile.
if [ -f "$root/clients/js/package-lock.json" ] && [ ! -d "$root/clients/js/node_modules" ]; then
  echo "== npm ci in clients/js"
  npm ci --prefix "$root/clients/js" --no-audit --no-fund
fi
if [ ! -d "$here/node_modules" ] || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
  echo "== npm ci in examples/sveltekit"
  (cd "$here" && npm ci --no-audit --no-fund)
fi
if ! (cd "$here" && node -e "require.resolve('mqtt-sse-bridge/server')" 2>/dev/null); then
  echo "mqtt-sse-bridge/server is missing from clients/js: this example needs the package's server library" >&2
  exit 1
fi

# ---- ports, secret, configs ----------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
next_free() { # first free port from $1 that is not in the rest
  local p=$1; shift
  while port_busy "$p" || [[ " $* " == *" $p "* ]]; do p=$((p + 1)); done
  echo "$p"
}
MQTT_PORT=$(next_free "${MQTT_PORT:-1883}")
SSE_PORT=$(next_free "${SSE_PORT:-8080}" "$MQTT_PORT")
APP_PORT=$(next_free "${APP_PORT:-5173}" "$MQTT_PORT" "$SSE_PORT")
APP_ORIGIN="http://127.0.0.1:$APP_PORT"

run=$(mktemp -d /tmp/mqtt-sse-bridge-example.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# The bridge checks the tokens that the app signs: both read this secret.
node -e "process.stdout.write(require('crypto').randomBytes(32).toString('hex') + '\n')" >"$run/jwt.secret"
chmod 600 "$run/jwt.secret"

# The bridge's options (the same names in both forms). The page (APP_ORIGIN) opens
# its stream on the bridge's port, another origin: cors_origins lets it.
bridge_opts=(
  "http_port $SSE_PORT"
  "jwt_secret_file $run/jwt.secret"
  "cors_origins $APP_ORIGIN,http://localhost:$APP_PORT"
  "presence_prefix presence"
  "topic_prefix sync"
)
{
  echo "listener $MQTT_PORT 127.0.0.1"
  echo "allow_anonymous true"
  echo "persistence false"
  echo "connection_messages false"
  echo "user $(id -un)" # as root, mosquitto would switch to the user 'mosquitto'
  if [ "$form" = plugin ]; then
    echo "plugin $plugin_so"
    for o in "${bridge_opts[@]}"; do echo "plugin_opt_$o"; done
  fi
} >"$run/mosquitto.conf"
{
  echo "mqtt_host 127.0.0.1"
  echo "mqtt_port $MQTT_PORT"
  for o in "${bridge_opts[@]}"; do echo "$o"; done
} >"$run/bridge.conf"

# ---- start ----------------------------------------------------------------------------------
"$mosquitto" -c "$run/mosquitto.conf" &
pids+=($!)
for _ in $(seq 100); do port_busy "$MQTT_PORT" && break; sleep 0.1; done
port_busy "$MQTT_PORT" || { echo "mosquitto is not listening on 127.0.0.1:$MQTT_PORT (see its log above)" >&2; exit 1; }
if [ "$form" = daemon ]; then
  "$bridge_bin" -c "$run/bridge.conf" &
  pids+=($!)
fi
for _ in $(seq 100); do port_busy "$SSE_PORT" && break; sleep 0.1; done
port_busy "$SSE_PORT" || { echo "the bridge is not listening on 127.0.0.1:$SSE_PORT (see its log above)" >&2; exit 1; }

export MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT"
export SSE_URL="http://127.0.0.1:$SSE_PORT/api/sse"
export SSE_JWT_SECRET_FILE="$run/jwt.secret"
export SSE_TOPIC_PREFIX=sync SSE_PRESENCE_PREFIX=presence
cd "$here"
if [ "$app" = dev ]; then
  node node_modules/vite/bin/vite.js dev --host 127.0.0.1 --port "$APP_PORT" --strictPort &
  pids+=($!)
else
  echo "== vite build"
  node node_modules/vite/bin/vite.js build --logLevel warn
  PORT=$APP_PORT HOST=127.0.0.1 ORIGIN=$APP_ORIGIN node build &
  pids+=($!)
fi
for _ in $(seq 200); do port_busy "$APP_PORT" && break; sleep 0.1; done

cat <<TXT

The focus-timer example: the app on $APP_ORIGIN, the bridge ($form form) on
http://127.0.0.1:$SSE_PORT (SSE), mosquitto on 127.0.0.1:$MQTT_PORT.

Open it as two devices of the user 'demo' (two windows, or two browsers):
  $APP_ORIGIN/?device=phone&name=Phone
  $APP_ORIGIN/?device=laptop&name=Laptop
Start a timer on one; the other shows it. Move it, skip a Pomodoro phase, stop it.
Another user: add &user=alice (a cookie keeps it).

Watch the events on the broker:
  mosquitto_sub -h 127.0.0.1 -p $MQTT_PORT -v -t 'sync/#' -t 'presence/#'
Ctrl-C stops the app, the bridge and mosquitto.

TXT
status=0
wait -n "${pids[@]}" || status=$?
echo "a process ended (status $status): stopping the others" >&2
exit "$status"
