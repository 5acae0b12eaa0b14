"""Builds the single-file agent (``agent.pyz``) that the server serves to pilots.

The archive holds ``pilotwms/agent/`` and a ``pilotwms/__init__.py`` of its own that imports
nothing, so running it needs only the interpreter; ``__main__.py`` at the top calls the agent.
"""

from __future__ import annotations

import io
import zipapp
import zipfile
from pathlib import Path
from typing import Union

from . import AGENT_VERSION

_PACKAGE_INIT = '"""pilotwms, as much of it as a worker node needs: the pilot agent."""\n'
_MAIN = "import sys\nfrom pilotwms.agent.__main__ import main\nsys.exit(main(prog='agent.pyz'))\n"


def build_zipapp(dest_path: Union[str, Path], interpreter: str = "/usr/bin/env python3") -> str:
    """Write the agent zipapp to ``dest_path``; returns the agent version it contains.

    Files are stored in a fixed order with fixed timestamps so that the same sources always give
    the same bytes (the server can then publish a stable digest per version).
    """
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
            add("pilotwms/agent/" + path.relative_to(source).as_posix(), path.read_bytes())
    dest = Path(dest_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    buffer.seek(0)
    zipapp.create_archive(buffer, str(dest), interpreter=interpreter)
    return AGENT_VERSION
