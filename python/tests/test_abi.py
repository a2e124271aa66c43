"""The ctypes structs match the header: a C program prints each struct's size and every
field's offset, compared with ctypes' layout (a field added or moved in vae.h fails here)."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT
from vae import _lib


def test_struct_layouts_match_the_header(tmp_path):
    cc = shutil.which("cc")
    if not cc:
        pytest.skip("no C compiler")
    lines = ['#include "vae.h"', "#include <stddef.h>", "#include <stdio.h>", "int main(void) {"]
    for cname, cls in _lib.STRUCTS.items():
        lines.append('printf("%s %%zu\\n", sizeof(%s));' % (cname, cname))
        for field, _ in cls._fields_:
            lines.append('printf("%s.%s %%zu\\n", offsetof(%s, %s));' % (cname, field, cname, field))
    lines.append("return 0; }")
    src = tmp_path / "abi.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "abi"
    subprocess.run([cc, "-std=c11", "-I", os.path.join(ROOT, "include"), str(src), "-o", str(exe)],
                   check=True)
    c = dict(line.rsplit(" ", 1) for line in subprocess.run([str(exe)], capture_output=True,
                                                            text=True, check=True).stdout.split("\n") if line)
    for cname, cls in _lib.STRUCTS.items():
        assert int(c[cname]) == __import__("ctypes").sizeof(cls), cname
        for field, _ in cls._fields_:
            assert int(c["%s.%s" % (cname, field)]) == getattr(cls, field).offset, (cname, field)
