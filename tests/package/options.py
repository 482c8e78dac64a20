"""The daemon's option names, read from the option table of core/config.c
(`static const struct opt opts[]`: one {"name", OPT_..., ...} line each).
When core/config.h gains a read-only option table API, read it from there."""

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_C = os.path.join(REPO, "core", "config.c")


def option_names(path=CONFIG_C):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"static\s+const\s+struct\s+opt\s+\w+\[\]\s*=\s*\{(.*?)\n\};", text, re.S)
    if not m:
        raise AssertionError("no option table (static const struct opt ...[]) in %s" % path)
    names = re.findall(r'^\s*\{\s*"([a-z0-9_]+)"\s*,', m.group(1), re.M)
    if len(names) < 20:
        raise AssertionError("only %d options found in %s: the table's shape changed" %
                             (len(names), path))
    return names


def missing_from_man(man_text, names):
    """The names that no .TP/.TQ entry of the man page source introduces
    (lines like `.BR http_port " (8080)"`)."""
    entries = set(re.findall(r"^\.B[RI]?\s+([a-z0-9_]+)\b", man_text, re.M))
    return [n for n in names if n not in entries]
