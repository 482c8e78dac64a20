"""The settings the integration harness reads from the environment (each
variable is described in harness.py): the form under test, where the bridge,
the plugin and the mosquitto tools are, and the time scale."""

import os
import re
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

FORM = os.environ.get("SB_FORM", "daemon")
BRIDGE_BIN = os.environ.get("SB_BRIDGE_BIN") or os.path.join(
    REPO, "build", "bridge", "mqtt-sse-bridge")
PLUGIN_SO = os.path.abspath(os.environ.get("SB_PLUGIN") or os.path.join(
    REPO, "build", "plugin", "mosquitto_sse.so"))
PRELOAD = [p for p in re.split(r"[:\s]+", os.environ.get("SB_PRELOAD", "")) if p]
# mosquitto's own leaks on its error exits (see the file), under SB_PRELOAD
LSAN_SUPPRESSIONS = os.path.join(HERE, "lsan-mosquitto.supp")
TIME_SCALE = float(os.environ.get("SB_TIME_SCALE", "1"))


def _find_tool(name, env):
    path = os.environ.get(env) or shutil.which(name)
    if not path:
        for d in ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"):
            if os.access(os.path.join(d, name), os.X_OK):
                return os.path.join(d, name)
    return path or name


MOSQUITTO = _find_tool("mosquitto", "SB_MOSQUITTO")
MOSQUITTO_PUB = _find_tool("mosquitto_pub", "SB_MOSQUITTO_PUB")
MOSQUITTO_SUB = _find_tool("mosquitto_sub", "SB_MOSQUITTO_SUB")
