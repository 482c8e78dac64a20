"""The package installs as its README says, without a network: into a fresh
venv made with Debian's python3 and --system-site-packages (so that it sees
Debian's paho-mqtt), with pip install --no-build-isolation; it imports from
there, ships py.typed, and (where mypy is installed) type-checks strictly."""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

import support

PYTHON = os.environ.get("SB_DEBIAN_PYTHON", "/usr/bin/python3")


def run(cmd, cwd=None, env=None):
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=300)
    if r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (" ".join(cmd), r.returncode,
                                                      r.stdout.decode(errors="replace")))
    return r.stdout.decode(errors="replace")


def quiet_env():
    env = dict(os.environ)
    # no network, no look-ups of newer pip versions, no user site
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1",
               PIP_NO_INPUT="1")
    for k in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(k, None)
    return env


class Install(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sb-py-install-")
        # build from a copy: pip builds in the source tree (build/, *.egg-info)
        cls.src = os.path.join(cls.tmp, "python")
        shutil.copytree(support.CLIENT_DIR, cls.src,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__",
                                                      "tests"))
        cls.venv = os.path.join(cls.tmp, "venv")
        cls.env = quiet_env()
        run([PYTHON, "-m", "venv", "--system-site-packages", cls.venv], env=cls.env)
        cls.py = os.path.join(cls.venv, "bin", "python")
        cls.out = run([cls.py, "-m", "pip", "install", "--no-build-isolation", cls.src],
                      cwd=cls.tmp, env=cls.env)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_installed_and_importable_with_py_typed(self):
        self.assertIn("Successfully installed mqtt-sse-bridge-0.1.0", self.out)
        out = run([self.py, "-c", textwrap.dedent("""
            import os, paho.mqtt, mqtt_sse_bridge as m
            from mqtt_sse_bridge import connect_hub, create_sse_event, HubError
            here = os.path.dirname(m.__file__)
            print(here)
            print(os.path.isfile(os.path.join(here, "py.typed")))
            print(paho.mqtt.__file__)
            e = create_sse_event("timer", "started", {"a": 1}, "phone")
            print(sorted(e))
            """)], cwd=self.tmp, env=self.env).split("\n")
        self.assertTrue(out[0].startswith(os.path.join(self.venv, "lib")), out[0])
        self.assertIn("site-packages", out[0])
        self.assertEqual(out[1], "True")
        self.assertTrue(out[2].startswith("/usr/lib/python3/dist-packages"), out[2])
        self.assertEqual(out[3], "['channel', 'payload', 'sourceDeviceId', 'timestamp', 'type']")
        files = run([self.py, "-m", "pip", "show", "-f", "mqtt-sse-bridge"], env=self.env)
        self.assertIn("mqtt_sse_bridge/py.typed", files)
        self.assertIn("Requires: paho-mqtt", files)

    def test_strict_type_check(self):
        probe = subprocess.run([PYTHON, "-c", "import mypy.api"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        if probe.returncode != 0:
            self.skipTest("mypy is not installed (Debian: python3-mypy)")
        user = os.path.join(self.tmp, "user_code.py")
        with open(user, "w") as f:
            f.write(textwrap.dedent("""
                from typing import Dict
                from mqtt_sse_bridge import Hub, SSEEvent, connect_hub, create_sse_event

                def notify(hub: Hub, user: str, device: str) -> int:
                    payload: Dict[str, object] = {"memoId": "m1"}
                    event: SSEEvent = create_sse_event("timer", "started", {"memoId": "m1"},
                                                       device)
                    hub.broadcast(user, event, device)
                    hub.send_to_device(user, device, {"channel": "c", "type": "t",
                                                      "payload": [1, 2]})
                    count: int = hub.get_connection_count(user)
                    return count if hub.is_user_connected(user) else 0

                with connect_hub("mqtt://127.0.0.1", timeout=1.0) as h:
                    notify(h, "u1", "phone")
                """))
        # the installed package, as a user's project sees it
        out = run([self.py, "-m", "mypy", "--strict", "--no-incremental",
                   "--cache-dir", os.path.join(self.tmp, "mypy-cache"), user], cwd=self.tmp,
                  env=self.env)
        self.assertIn("Success", out)
        # and the package's own sources
        out = run([PYTHON, "-m", "mypy", "--config-file", "../pyproject.toml", "--strict",
                   "--no-incremental", "--cache-dir", os.path.join(self.tmp, "mypy-cache2"),
                   "-p", "mqtt_sse_bridge"], cwd=os.path.join(self.src, "src"), env=self.env)
        self.assertIn("Success", out)


if __name__ == "__main__":
    unittest.main()
