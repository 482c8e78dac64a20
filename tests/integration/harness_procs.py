"""Process, port and timing utilities of the integration harness: timeouts
scaled by SB_TIME_SCALE, free ports, polling, stopping a process, file
descriptor limits, readings of /proc, and reading a log file."""

import os
import resource
import signal
import socket
import subprocess
import time

from harness_env import TIME_SCALE


def scaled(seconds):
    return seconds * TIME_SCALE


def free_port():
    """Returns a TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """True if something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout, interval=0.02, what="condition"):
    """Polls predicate until it returns a true value; returns that value.
    Raises AssertionError naming `what` after timeout seconds."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (scaled(timeout), what))
        time.sleep(interval)


def raise_nofile_limit(want):
    """Raises this process's soft RLIMIT_NOFILE towards want (up to the hard
    limit). Returns the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def set_nofile_limit(limit):
    """Sets the soft RLIMIT_NOFILE to limit (at most the hard limit); nothing
    when limit is None or 0. For the preexec_fn of a child process."""
    if limit:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))


def cpu_seconds(pid):
    """utime + stime of a process, in seconds, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    """VmRSS of a process in KiB, from /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def stop_process(proc, timeout=10):
    """SIGTERM, then SIGKILL after timeout (scaled); returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def read_text(path, limit=None):
    """The text of a file (a log). With limit, a text of more lines keeps its
    first and last lines, limit in all, and says how many it left out."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return "<cannot read %s: %s>" % (path, e)
    text = data.decode("utf-8", "replace")
    if limit and text.count("\n") > limit:
        lines = text.splitlines()
        keep_head = limit // 5
        text = "\n".join(lines[:keep_head] + ["... (%d lines left out) ..." %
                                              (len(lines) - limit)] +
                         lines[-(limit - keep_head):])
    return text
