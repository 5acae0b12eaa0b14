"""Builds the single-file agent (``agent.pyz``) that the server serves to pilots.

The archive holds ``pilotwms/agent/`` and a ``pilotwms/__init__.py`` of its own that imports
nothing, so running it needs only the interpreter; ``__main__.py`` at the top calls the agent.
"""

from __future__ import annotations

import io
import re
import zipapp
import zipfile
from pathlib import Path
from typing import Optional, Union

from . import AGENT_VERSION

_PACKAGE_INIT = '"""pilotwms, as much of it as a worker node needs: the pilot agent."""\n'
_VERSION_LINE = re.compile(r"^AGENT_VERSION = .*$", re.M)
_VERSION_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_MAIN = "import sys\nfrom pilotwms.agent.__main__ import main\nsys.exit(main(prog='agent.pyz'))\n"


def build_zipapp(
    dest_path: Union[str, Path],
    interpreter: str = "/usr/bin/env python3",
    version: Optional[str] = None,
) -> str:
    """Write the agent zipapp to ``dest_path``; returns the agent version it contains.

    Files are stored in a fixed order with fixed timestamps so that the same sources always give
    the same bytes (the server can then publish a stable digest per version). ``version``
    replaces ``AGENT_VERSION`` in the archive: a patched agent for a rolling upgrade (``pilotwms
    admin agent upload``), or an agent that differs only in its version, for tests.
    """
    if version is not None and not _VERSION_TEXT.fullmatch(version):
        raise ValueError(
            f"agent version {version!r}: use 1 to 64 letters, digits and . _ + -, "
            "starting with a letter or digit"
        )
    source = Path(__file__).resolve().parent
    files = sorted(p for p in source.rglob("*.py") if "__pycache__" not in p.parts)
    buffer = io.BytesIO()
    stamp = (2020, 1, 1, 0, 0, 0)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:

        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)

        add("__main__.py", _MAIN.encode())
        add("pilotwms/__init__.py", _PACKAGE_INIT.encode())
        for path in files:
            name = path.relative_to(source).as_posix()
            data = path.read_bytes()
            if name == "__init__.py" and version is not None:
                line = f'AGENT_VERSION = "{version}"'
                text, found = _VERSION_LINE.subn(line, data.decode("utf-8"), count=1)
                if found != 1:
                    raise RuntimeError(f"{path}: no AGENT_VERSION line to set version {version}")
                data = text.encode("utf-8")
            add("pilotwms/agent/" + name, data)
    dest = Path(dest_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    buffer.seek(0)
    zipapp.create_archive(buffer, str(dest), interpreter=interpreter)
    return AGENT_VERSION if version is None else version
