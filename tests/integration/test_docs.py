"""The documentation keeps up with the code: every key of the shipped
conf/usergate.conf is described in usergate.conf(5), every option of
`usergate -h` in usergate(8), and the pages render without warnings."""

import os
import re
import shutil
import subprocess

import pytest

from conftest import HERE, USERGATE_BIN

TOP = os.path.join(HERE, "..", "..")


def _read(*parts):
    with open(os.path.join(TOP, *parts)) as f:
        return f.read()


def test_every_conf_key_is_in_the_man_page():
    conf = _read("conf", "usergate.conf")
    keys = set(re.findall(r"^; ([a-z_]+) =", conf, re.M))
    assert len(keys) > 40, keys
    page = _read("man", "usergate.conf.5.in")
    documented = set(re.findall(r"^\\fB([a-z_]+)\\fR = ", page, re.M))
    missing = sorted(keys - documented - {"include"})
    assert not missing, "usergate.conf(5) lacks %s" % missing
    assert "include = " in page


def _sections(text, header):
    """(section, line) for every line after the first header match."""
    section = None
    for line in text.splitlines():
        m = header.match(line)
        if m:
            section = m.group(1)
        elif section:
            yield section, line


def test_man_page_defaults_match_the_conf_file():
    # conf/usergate.conf carries the table's defaults (tests/unit/test_config.c
    # checks that), so the page agrees with the code through it.
    conf = {}
    for section, line in _sections(_read("conf", "usergate.conf"),
                                   re.compile(r"^(?:; )?\[(\w+)")):
        m = re.match(r"^; ([a-z_]+) =(?: (.*))?$", line)
        if m and section != "client":  # the [client billing] values are examples
            conf.setdefault((section, m.group(1)), m.group(2) or "")
    page, key = {}, None
    for section, line in _sections(_read("man", "usergate.conf.5.in"),
                                   re.compile(r'^\.SH "\[(\w+)')):
        m = re.match(r"^\\fB([a-z_]+)\\fR = ", line)
        if m:
            key = m.group(1)
        m = re.match(r"^Default: \\fB(.*?)\\fR", line)
        if m and key:
            page[(section, key)] = m.group(1).replace("\\-", "-")
            key = None
    assert len(conf) > 40, conf
    wrong = {k: (v, page.get(k)) for k, v in conf.items()
             if page.get(k) != (v if v else "(empty)")}
    assert not wrong, "usergate.conf(5) defaults differ from conf/usergate.conf: %s" % wrong


def test_every_option_is_in_usergate_8():
    usage = subprocess.run([USERGATE_BIN, "-h"], capture_output=True, text=True).stdout
    opts = set(re.findall(r"^\s+(-[a-zA-Z0-9])\b", usage, re.M))
    assert {"-c", "-t", "-s", "-V", "-h"} <= opts, usage
    page = _read("man", "usergate.8.in")
    for o in opts:
        assert ("\\" + o) in page or ("\\fB\\" + o) in page, "usergate(8) lacks %s" % o


@pytest.mark.parametrize("page", ["usergate.8.in", "usergate.conf.5.in"])
def test_pages_render_without_warnings(page):
    groff = shutil.which("groff")
    if groff is None:
        pytest.fail("groff is needed to check the man pages (package groff-base)")
    p = subprocess.run([groff, "-man", "-ww", "-z", os.path.join(TOP, "man", page)],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr


def test_architecture_doc_names_every_module():
    doc = _read("docs", "ARCHITECTURE.md")
    modules = sorted(f for f in os.listdir(os.path.join(TOP, "src")) if f.endswith(".c"))
    assert len(modules) > 20, modules
    missing = [m for m in modules if "`%s`" % m not in doc]
    assert not missing, "docs/ARCHITECTURE.md lacks %s" % missing
    readme = _read("README.md")
    assert "docs/ARCHITECTURE.md" in readme
    assert "../shared" not in readme and "../shared" not in doc
