#!/usr/bin/env python3
"""The Debian package, end to end on this machine (root only):

  cpack -G DEB in the build tree, lintian (no E:), dpkg -i, the files with
  their owners and modes, the installed daemon run as the user
  mqtt-sse-bridge with the installed configuration and secret against a
  test mosquitto (free loopback ports) delivering one event over SSE, the
  installed plugin loaded by another test mosquitto, then
  dpkg -r (configuration and secret kept), dpkg -i again (the same secret)
  and dpkg -P (all gone, the user too).

The service is never started: this runs where systemd does not (a
container, CI); where it does, a policy-rc.d forbids starts for the time of
the test. Whatever happens, the package is purged at the end.

Environment (set by tests/package/CMakeLists.txt):
  SB_BUILD_DIR     the build tree to package
  SB_CPACK         cpack of the CMake that configured it
  SB_DEB_VERSION   the package's version (upstream-revision)
  SB_VERSION       the daemon's --version
  SB_LIST_OPTIONS  tests/docs' list_options: the option table, one a line
Exit 77 (skipped) when not root.
"""

import glob
import grp
import gzip
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import harness  # noqa: E402  (Broker, make_jwt, free_port)

PKG = "mqtt-sse-bridge"
USER = PKG
CONF_DIR = "/etc/" + PKG
CONF = CONF_DIR + "/" + PKG + ".conf"
SECRET = CONF_DIR + "/jwt.secret"
STATE_DIR = "/var/lib/" + PKG
BIN = "/usr/bin/" + PKG
UNIT = "/lib/systemd/system/%s.service" % PKG
WANTS = "/etc/systemd/system/multi-user.target.wants/%s.service" % PKG
MAN = "/usr/share/man/man1/%s.1.gz" % PKG
DOC = "/usr/share/doc/" + PKG
WEB = "/usr/share/%s/web" % PKG
POLICY_RC = "/usr/sbin/policy-rc.d"
SKIP = 77

checks = 0


def log(msg):
    print(msg, flush=True)


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1
    log("  ok: " + what)


def run(cmd, check_rc=True, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, **kw)
    out = r.stdout.decode("utf-8", "replace")
    if check_rc and r.returncode != 0:
        raise AssertionError("%s exited %d:\n%s" % (" ".join(cmd), r.returncode, out))
    return r.returncode, out


def dpkg(*args):
    """dpkg with the arguments, waiting for the dpkg lock while another
    process (apt-get elsewhere on the machine) holds it."""
    deadline = time.monotonic() + 300
    while True:
        rc, out = run(["dpkg"] + list(args), check_rc=False,
                      env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if rc != 0 and "lock" in out and time.monotonic() < deadline:
            time.sleep(2)
            continue
        if rc != 0:
            raise AssertionError("dpkg %s exited %d:\n%s" % (" ".join(args), rc, out))
        return out


def status():
    """dpkg's status of the package ('' when dpkg knows nothing of it)."""
    rc, out = run(["dpkg-query", "-W", "-f=${Status}", PKG], check_rc=False)
    return out.strip() if rc == 0 else ""


def mode_owner(path):
    st = os.lstat(path)
    return (stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name,
            grp.getgrgid(st.st_gid).gr_name)


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def installed():
    return status() not in ("", "unknown ok not-installed")


def purge_if_there(why):
    if installed():
        log("%s: purging %s (%s)" % (why, PKG, status()))
        dpkg("--purge", PKG)


# ---- steps ---------------------------------------------------------------------

def build_deb(build_dir):
    log("== cpack -G DEB in %s" % build_dir)
    arch = run(["dpkg", "--print-architecture"])[1].strip()
    name = "%s_%s_%s.deb" % (PKG, os.environ["SB_DEB_VERSION"], arch)
    deb = os.path.join(build_dir, name)
    if os.path.exists(deb):
        os.unlink(deb)
    rc, out = run([os.environ.get("SB_CPACK", "cpack"), "-G", "DEB"], cwd=build_dir,
                  check_rc=False)
    log(out)
    check(rc == 0, "cpack -G DEB succeeds")
    check(os.path.isfile(deb), "it made %s" % name)
    fields = run(["dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Section",
                  "Depends", "Recommends", "Maintainer"])[1]
    log(fields)
    check(re.search(r"^Depends:.*\blibmicrohttpd\d+", fields, re.M) is not None,
          "Depends comes from dpkg-shlibdeps (libmicrohttpd)")
    check(re.search(r"^Depends:.*\badduser\b", fields, re.M) is not None, "Depends has adduser")
    check(re.search(r"^Recommends:.*\bmosquitto\b", fields, re.M) is not None,
          "Recommends mosquitto")
    check(re.search(r"^Section: net$", fields, re.M) is not None, "Section net")
    control = tempfile.mkdtemp(prefix="sb-deb-control-")
    try:
        run(["dpkg-deb", "-e", deb, control])
        with open(os.path.join(control, "conffiles")) as f:
            conffiles = f.read().split()
        check(conffiles == [CONF], "conffiles lists %s" % CONF)
        for script in ("postinst", "prerm", "postrm"):
            m = mode_owner(os.path.join(control, script))[0]
            check(m == 0o755, "%s is in the package, mode 755" % script)
    finally:
        shutil.rmtree(control, ignore_errors=True)
    return deb


def run_lintian(deb):
    log("== lintian")
    lintian = shutil.which("lintian")
    check(lintian is not None, "lintian is installed (scripts/deps.sh --test)")
    rc, out = run([lintian, "--display-info", deb], check_rc=False)
    log(out)
    errors = [l for l in out.splitlines() if l.startswith("E:")]
    check(not errors, "lintian reports no error")
    check(rc == 0, "lintian exits 0")


def plugin_dir_of_mosquitto():
    """Where Debian's mosquitto keeps mosquitto_dynamic_security.so, if it is
    installed."""
    rc, out = run(["dpkg", "-L", "mosquitto"], check_rc=False)
    for line in out.splitlines() if rc == 0 else ():
        if line.endswith("/mosquitto_dynamic_security.so"):
            return os.path.dirname(line)
    return None


def check_installed():
    log("== the installed files")
    check(status() == "install ok installed", "dpkg says installed")
    files = dpkg("-L", PKG).split()

    check(mode_owner(BIN) == (0o755, "root", "root"), "%s, 755 root:root" % BIN)
    out = run([BIN, "--version"])[1]
    check(os.environ.get("SB_VERSION", "") in out, "%s --version says %s" %
          (BIN, os.environ.get("SB_VERSION")))

    plugins = [f for f in files if f.endswith("/mosquitto_sse.so")]
    check(len(plugins) == 1, "one mosquitto_sse.so: %s" % plugins)
    plugin = plugins[0]
    want = plugin_dir_of_mosquitto()
    if want:
        check(os.path.dirname(plugin) == want,
              "the plugin is beside mosquitto_dynamic_security.so in %s" % want)
    check(mode_owner(plugin) == (0o644, "root", "root"), "%s, 644 root:root" % plugin)

    # the user and group of the service
    check(user_exists(USER) and group_exists(USER), "system user and group %s" % USER)
    pw = pwd.getpwnam(USER)
    check(pw.pw_uid < 1000 and pw.pw_gid == grp.getgrnam(USER).gr_gid,
          "%s is a system user (uid %d) in its own group" % (USER, pw.pw_uid))
    check(pw.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false"),
          "%s has no login shell (%s)" % (USER, pw.pw_shell))

    # the configuration: a conffile, readable by the service's group only
    rc, out = run(["dpkg-query", "-W", "-f=${Conffiles}", PKG])
    check(CONF in out, "%s is a conffile" % CONF)
    check(mode_owner(CONF) == (0o640, "root", USER), "%s, 640 root:%s" % (CONF, USER))
    with open(CONF) as f:
        conf = f.read()
    for line in ("jwt_secret_file " + SECRET, "mqtt_host localhost", "replay_dir " + STATE_DIR,
                 "auth jwt"):
        check(re.search(r"^%s$" % re.escape(line), conf, re.M) is not None,
              "the configuration says '%s'" % line)

    # the secret: random hex, readable by the user (and root) only
    m, owner, group = mode_owner(SECRET)
    check((m, owner, group) in ((0o640, "root", USER), (0o600, USER, USER)),
          "%s is 640 root:%s or 600 %s (it is %o %s:%s)" % (SECRET, USER, USER, m, owner, group))
    with open(SECRET) as f:
        secret = f.read().strip()
    check(re.fullmatch(r"[0-9a-f]{64}", secret) is not None, "the secret is 32 random bytes in hex")
    rc, _ = run(["runuser", "-u", USER, "--", "cat", SECRET], check_rc=False)
    check(rc == 0, "%s can read the secret" % USER)
    rc, _ = run(["runuser", "-u", "nobody", "--", "cat", SECRET], check_rc=False)
    check(rc != 0, "another user (nobody) cannot")
    check(SECRET not in files, "dpkg does not list the secret as a file of the package")

    check(mode_owner(STATE_DIR) == (0o750, USER, USER), "%s, 750 %s:%s" % (STATE_DIR, USER, USER))

    # the unit: the fixed user, the installed binary and configuration
    with open(UNIT) as f:
        unit = f.read()
    check(mode_owner(UNIT)[0] == 0o644, "%s, 644" % UNIT)
    check(re.search(r"^User=%s$" % USER, unit, re.M) is not None, "the unit runs as User=%s" % USER)
    check(re.search(r"^DynamicUser=", unit, re.M) is None, "the unit has no DynamicUser")
    check(re.search(r"^ExecStart=%s -c %s$" % (re.escape(BIN), re.escape(CONF)), unit, re.M)
          is not None, "ExecStart=%s -c %s" % (BIN, CONF))
    check(os.path.islink(WANTS), "the unit is enabled (%s)" % WANTS)
    if shutil.which("systemd-analyze"):
        rc, out = run(["systemd-analyze", "verify", "--man=no", UNIT], check_rc=False)
        check(rc == 0, "systemd-analyze verify finds nothing wrong with the unit %s" % out.strip())

    # the man page lists every option
    rc, out = run(["man", "-w", PKG], check_rc=False)
    check(rc == 0 and out.strip() == MAN, "man -w %s finds %s" % (PKG, MAN))
    with gzip.open(MAN, "rt", encoding="utf-8") as f:
        page = f.read()
    names = [l.split("\t")[0] for l in run([os.environ["SB_LIST_OPTIONS"]])[1].splitlines() if l]
    missing = [n for n in names if not re.search(r"^\.B %s$" % re.escape(n), page, re.M)]
    check(len(names) > 20 and not missing,
          "the man page lists all %d options of the option table (missing: %s)" % (len(names), missing))
    r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", MAN],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    warnings = r.stderr.decode("utf-8", "replace").strip()
    check(r.returncode == 0 and not warnings, "man --warnings finds nothing in it %s" % warnings)

    for doc in ("README.md", "copyright", "changelog.Debian.gz", "examples/mosquitto.conf",
                "examples/mosquitto.acl"):
        check(os.path.isfile(os.path.join(DOC, doc)), "%s/%s" % (DOC, doc))
    with open(os.path.join(DOC, "examples/mosquitto.conf")) as f:
        example = f.read()
    check(re.search(r"^plugin %s$" % re.escape(plugin), example, re.M) is not None,
          "the example mosquitto.conf loads %s" % plugin)
    for web in ("index.html", "sse-client.js"):
        check(os.path.isfile(os.path.join(WEB, web)), "%s/%s" % (WEB, web))

    rc, out = run(["pgrep", "-u", USER], check_rc=False)
    check(rc != 0, "nothing runs as %s after the install (the service was not started)" % USER)
    return secret


def read_sse_until(resp, predicate, timeout):
    """Reads SSE lines from resp until predicate(line) is true; returns that
    line."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = resp.readline()
        if not line:
            raise AssertionError("the stream ended; read: %r" % seen)
        line = line.decode("utf-8").rstrip("\r\n")
        seen.append(line)
        if predicate(line):
            return line
    raise AssertionError("timed out; read: %r" % seen)


def run_installed_daemon(secret, workdir):
    log("== the installed daemon, as %s, with %s" % (USER, CONF))
    broker = harness.Broker(workdir)
    broker.start()
    daemon = None
    log_path = os.path.join(workdir, "daemon.log")
    try:
        pw = pwd.getpwnam(USER)
        for attempt in range(3):
            http_port = harness.free_port()
            cmd = ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid,
                   "--init-groups", "--inh-caps=-all", "--",
                   BIN, "-c", CONF, "--mqtt_port", str(broker.port),
                   "--http_port", str(http_port)]
            log("  " + " ".join(cmd))
            logf = open(log_path, "ab")
            daemon = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                      cwd="/")
            logf.close()

            def healthy():
                if daemon.poll() is not None:
                    return "exited"
                try:
                    c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=2)
                    c.request("GET", "/healthz")
                    return "up" if c.getresponse().status == 200 else False
                except OSError:
                    return False
            state = harness.wait_until(healthy, 20, interval=0.1, what="/healthz 200")
            if state == "up":
                break
            with open(log_path, errors="replace") as f:
                text = f.read()
            daemon = None
            if "in use" not in text or attempt == 2:
                raise AssertionError("the installed daemon exited:\n" + text)
        with open("/proc/%d/status" % daemon.pid) as f:
            uid = re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1)
        check(int(uid) == pw.pw_uid, "the daemon runs as %s (uid %s)" % (USER, uid))

        # a token signed with another key is refused: auth is on
        bad = harness.make_jwt("not-the-secret", {"sub": "pkg-user", "exp": int(time.time()) + 300})
        c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        c.request("GET", "/api/sse?deviceId=laptop", headers={"Authorization": "Bearer " + bad})
        r = c.getresponse()
        check(r.status == 401, "a token signed with another secret gets 401 (got %d)" % r.status)
        c.close()

        token = harness.make_jwt(secret, {"sub": "pkg-user", "exp": int(time.time()) + 300})
        c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=15)
        c.request("GET", "/api/sse?deviceId=laptop",
                  headers={"Authorization": "Bearer " + token, "Accept": "text/event-stream"})
        r = c.getresponse()
        check(r.status == 200 and r.getheader("Content-Type", "").startswith("text/event-stream"),
              "a token signed with the installed secret opens a stream (%d)" % r.status)
        read_sse_until(r, lambda l: l.startswith("retry:"), 10)
        event = {"type": "started", "payload": {"m": "from-the-package"}, "sourceDeviceId": "phone"}
        broker.publish("sync/pkg-user/timer", json.dumps(event))
        line = read_sse_until(r, lambda l: l.startswith("data:"), 15)
        got = json.loads(line[len("data:"):].strip())
        check(got.get("payload") == {"m": "from-the-package"} and got.get("channel") == "timer",
              "the event published on sync/pkg-user/timer arrives over SSE: %s" % line)
        c.close()
        journal = glob.glob(os.path.join(STATE_DIR, "*"))
        check(journal and all(mode_owner(p)[1] == USER for p in journal),
              "the daemon keeps its journal in %s as %s: %s" % (STATE_DIR, USER, journal))

        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(15)
        daemon = None
        check(rc == 0, "SIGTERM stops it, exit 0 (got %s)" % rc)
    except BaseException:
        try:
            with open(log_path, errors="replace") as f:
                log("---- the daemon's log ----\n" + f.read())
        except OSError:
            pass
        log("---- mosquitto's log ----\n" + broker.logs(20000))
        raise
    finally:
        if daemon is not None:
            harness.stop_process(daemon)
        broker.stop()


def run_installed_plugin(plugin, workdir):
    log("== the installed plugin, in a test mosquitto")
    http_port = harness.free_port()
    broker = harness.Broker(workdir, extra_conf=[
        "plugin " + plugin,
        "plugin_opt_http_port %d" % http_port,
        "plugin_opt_jwt_secret_file " + SECRET])
    try:
        broker.start()

        def healthz():
            try:
                c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=2)
                c.request("GET", "/healthz")
                return c.getresponse().status == 200
            except OSError:
                return False
        harness.wait_until(healthz, 20, interval=0.1, what="the plugin's /healthz")
        check(True, "mosquitto loads %s and it serves /healthz" % plugin)
    except BaseException:
        log("---- mosquitto's log ----\n" + broker.logs(20000))
        raise
    finally:
        broker.stop()


def remove_and_purge(deb, plugin):
    log("== dpkg -r")
    dpkg("--remove", PKG)
    check(status() == "deinstall ok config-files", "dpkg says config-files (%s)" % status())
    check(not os.path.exists(BIN) and not os.path.exists(plugin), "the binary and the plugin are gone")
    check(os.path.isfile(CONF), "%s is kept" % CONF)
    check(os.path.isfile(SECRET), "%s is kept" % SECRET)
    check(user_exists(USER), "the user %s is kept" % USER)

    log("== dpkg -i again over the kept configuration")
    with open(SECRET) as f:
        secret = f.read()
    dpkg("--install", deb)
    check(status() == "install ok installed", "dpkg says installed")
    with open(SECRET) as f:
        check(f.read() == secret, "the secret is the same as before")
    check(mode_owner(CONF) == (0o640, "root", USER), "%s is still 640 root:%s" % (CONF, USER))

    log("== dpkg -P")
    dpkg("--purge", PKG)
    check(status() in ("", "unknown ok not-installed"), "dpkg knows no %s (%r)" % (PKG, status()))
    check(not os.path.exists(CONF_DIR), "%s is gone, the secret with it" % CONF_DIR)
    check(not os.path.exists(STATE_DIR), "%s is gone" % STATE_DIR)
    check(not user_exists(USER) and not group_exists(USER), "the user and group are gone")
    rc, out = run(["dpkg-statoverride", "--list"], check_rc=False)
    check(CONF not in out, "no dpkg-statoverride left for %s" % CONF)
    check(not os.path.lexists(WANTS) and
          not os.path.lexists("/etc/systemd/system/%s.service" % PKG),
          "no enable or mask link of the unit is left")
    for p in (UNIT, MAN, DOC, WEB):
        check(not os.path.exists(p), "%s is gone" % p)


def main():
    if os.geteuid() != 0:
        log("SKIP: the package test installs a .deb on this machine: run it as root")
        return SKIP
    for tool in ("dpkg", "dpkg-deb", "dpkg-query", "dpkg-shlibdeps", "setpriv", "runuser", "man"):
        if not shutil.which(tool):
            log("FAIL: %s is missing (scripts/deps.sh --test installs what this test needs)" % tool)
            return 1
    build_dir = os.environ.get("SB_BUILD_DIR") or os.path.join(harness.REPO, "build")
    workdir = tempfile.mkdtemp(prefix="sb-package-")
    os.mkdir(os.path.join(workdir, "plugin"))
    policy_made = False
    ok = False
    try:
        purge_if_there("left over from an earlier run")
        if user_exists(USER):
            raise AssertionError("a user %s exists without the package: not touching it" % USER)
        deb = build_deb(build_dir)
        run_lintian(deb)
        if os.path.isdir("/run/systemd/system") and not os.path.exists(POLICY_RC):
            # systemd runs here: forbid starting the service for the test's time
            with open(POLICY_RC, "w") as f:
                f.write("#!/bin/sh\n# made by the mqtt-sse-bridge package test\nexit 101\n")
            os.chmod(POLICY_RC, 0o755)
            policy_made = True
        log("== dpkg -i %s" % os.path.basename(deb))
        log(dpkg("--install", deb))
        secret = check_installed()
        plugin = [f for f in dpkg("-L", PKG).split() if f.endswith("/mosquitto_sse.so")][0]
        run_installed_daemon(secret, workdir)
        run_installed_plugin(plugin, os.path.join(workdir, "plugin"))
        remove_and_purge(deb, plugin)
        ok = True
    except AssertionError as e:
        log("FAIL: %s" % e)
    except Exception:
        log("FAIL:\n" + traceback.format_exc())
    finally:
        try:
            purge_if_there("cleaning up")
        except AssertionError as e:
            log("FAIL: cleaning up: %s" % e)
            ok = False
        if policy_made:
            os.unlink(POLICY_RC)
        shutil.rmtree(workdir, ignore_errors=True)
    log("%d passed, %d failed" % (checks, 0 if ok else 1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
