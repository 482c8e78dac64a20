"""Integration harness: a real mosquitto, the bridge, and raw SSE clients.

Every test starts its own broker on a free loopback port with a generated
config, starts the bridge against it, talks to it with real clients, stops
everything it started (also when it fails), and prints the broker's and the
bridge's logs when it fails.

The bridge comes in two forms (SPEC: "Two forms, one core"). The form is
chosen by the environment variable SB_FORM ("daemon", the default, or
"plugin") and built by make_bridge(); test classes only use the interface of
DaemonBridge (start, stop, port, pid, logs, start_expect_failure), so
the same tests run against both forms. PluginBridge is that interface for the
plugin form, where the bridge is the broker itself: starting it (re)starts
the test's Broker with "plugin" and "plugin_opt_*" lines, stopping it stops
the broker, and its pid and log are the broker's. A test whose meaning holds
for one form only says so with @only_forms(...).

The harness is these modules, each of one job; the tests import every name
from this one:
  harness_env     the settings read from the environment (below)
  harness_procs   processes, ports and timing: scaled, free_port, listening,
                  wait_until, stop_process, file descriptor limits, rss_kib,
                  cpu_seconds, read_text
  harness_jwt     make_jwt
  harness_mqtt    Broker, BrokerExited, MqttSubscriber, run_pub, publish_lines,
                  core_destination
  harness_bridge  the two forms: DaemonBridge, PluginBridge, make_bridge,
                  only_forms, plugin_env, http_request (HTTP or HTTPS),
                  send_while_reading (a body sent while the answer is read),
                  parse_metrics
  harness_sse     SSEClient, Event, Reactor, assert_quiet, open_stuck_stream,
                  pump, compact, is_compact_json
  harness_case    BridgeTestCase, SANITIZER_REPORTS

Environment:
  SB_FORM         daemon (default) or plugin
  SB_BRIDGE_BIN   the daemon (default: <repo>/build/bridge/mqtt-sse-bridge)
  SB_PLUGIN       the plugin (default: <repo>/build/plugin/mosquitto_sse.so)
  SB_PRELOAD      libraries (separated by ':' or spaces) put into LD_PRELOAD of
                  mosquitto in the plugin form: the sanitizer runtimes, when the
                  plugin is built with -DSB_SANITIZE=ON (libasan, libubsan) or
                  -DSB_TSAN=ON (libtsan) and mosquitto is not (CMakeLists.txt)
  SB_MOSQUITTO    the broker binary (default: mosquitto on PATH or /usr/sbin)
  SB_MOSQUITTO_PUB, SB_MOSQUITTO_SUB
                  mosquitto_pub and mosquitto_sub (default: on PATH or /usr/bin)
  SB_TIME_SCALE   multiplies every timeout (e.g. 3 under valgrind)
"""

from harness_bridge import (DAEMON_ONLY_OPTIONS, BridgeHttp, DaemonBridge, HttpResponse,
                            PluginBridge, answer_complete, default_opts, http_request,
                            make_bridge, only_forms, parse_metrics, plugin_env,
                            send_while_reading)
from harness_case import SANITIZER_REPORTS, BridgeTestCase
from harness_env import (BRIDGE_BIN, FORM, HERE, LSAN_SUPPRESSIONS, MOSQUITTO, MOSQUITTO_PUB,
                         MOSQUITTO_SUB, PLUGIN_SO, PRELOAD, REPO, TIME_SCALE)
from harness_jwt import make_jwt
from harness_mqtt import (Broker, BrokerExited, MqttSubscriber, core_destination, publish_lines,
                          run_pub)
from harness_procs import (cpu_seconds, free_port, listening, raise_nofile_limit, read_text,
                           rss_kib, scaled, set_nofile_limit, stop_process, wait_until)
from harness_sse import (ISO_MS_UTC, Event, Reactor, SSEClient, assert_quiet, compact,
                         is_compact_json, open_stuck_stream, pump)

__all__ = [
    # harness_env
    "HERE", "REPO", "FORM", "BRIDGE_BIN", "PLUGIN_SO", "PRELOAD", "LSAN_SUPPRESSIONS",
    "TIME_SCALE", "MOSQUITTO", "MOSQUITTO_PUB", "MOSQUITTO_SUB",
    # harness_procs
    "scaled", "free_port", "listening", "wait_until", "raise_nofile_limit", "set_nofile_limit",
    "cpu_seconds", "rss_kib", "stop_process", "read_text",
    # harness_jwt
    "make_jwt",
    # harness_mqtt
    "Broker", "BrokerExited", "MqttSubscriber", "run_pub", "publish_lines", "core_destination",
    # harness_bridge
    "HttpResponse", "http_request", "answer_complete", "send_while_reading", "parse_metrics",
    "default_opts", "BridgeHttp",
    "DaemonBridge", "DAEMON_ONLY_OPTIONS", "plugin_env", "PluginBridge", "make_bridge",
    "only_forms",
    # harness_sse
    "compact", "is_compact_json", "ISO_MS_UTC", "Event", "Reactor", "SSEClient",
    "assert_quiet", "open_stuck_stream", "pump",
    # harness_case
    "SANITIZER_REPORTS", "BridgeTestCase",
]
