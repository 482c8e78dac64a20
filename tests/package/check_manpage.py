#!/usr/bin/env python3
"""Fails when an option of the option table (core/config.c) has no entry in
the man page (packaging/mqtt-sse-bridge.1.in), or the page has groff
warnings."""

import os
import shutil
import subprocess
import sys

from options import REPO, missing_from_man, option_names

MAN = os.path.join(REPO, "packaging", "mqtt-sse-bridge.1.in")


def main():
    with open(MAN, encoding="utf-8") as f:
        text = f.read()
    names = option_names()
    missing = missing_from_man(text, names)
    if missing:
        print("missing from %s: %s" % (MAN, ", ".join(missing)))
        return 1
    print("the man page has all %d options" % len(names))
    if shutil.which("man"):
        page = text.replace("@PROJECT_VERSION@", "0")
        r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", "-"],
                           input=page.encode(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env=dict(os.environ, MANWIDTH="80"))
        if r.returncode != 0 or r.stderr.strip():
            print("man --warnings:\n" + r.stderr.decode(errors="replace"))
            return 1
        print("man --warnings: clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
