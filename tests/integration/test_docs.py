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
    page = _read("man", "usergate.conf.5")
    documented = set(re.findall(r"^\\fB([a-z_]+)\\fR = ", page, re.M))
    missing = sorted(keys - documented - {"include"})
    assert not missing, "usergate.conf(5) lacks %s" % missing
    assert "include = " in page


def test_every_option_is_in_usergate_8():
    usage = subprocess.run([USERGATE_BIN, "-h"], capture_output=True, text=True).stdout
    opts = set(re.findall(r"^\s+(-[a-zA-Z0-9])\b", usage, re.M))
    assert {"-c", "-t", "-s", "-V", "-h"} <= opts, usage
    page = _read("man", "usergate.8")
    for o in opts:
        assert ("\\" + o) in page or ("\\fB\\" + o) in page, "usergate(8) lacks %s" % o


@pytest.mark.parametrize("page", ["usergate.8", "usergate.conf.5"])
def test_pages_render_without_warnings(page):
    groff = shutil.which("groff")
    if groff is None:
        pytest.fail("groff is needed to check the man pages (package groff-base)")
    p = subprocess.run([groff, "-man", "-ww", "-z", os.path.join(TOP, "man", page)],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
