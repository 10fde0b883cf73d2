"""nla-forensics: find the training data behind a model's misbehaviour from NLA explanations.

Notebook entry point::

    import forensics
    ws = forensics.open("my-workspace")      # or forensics.init(...)
    ws.sql("SELECT * FROM v_findings LIMIT 10")  # polars DataFrame
"""

from __future__ import annotations

__version__ = "0.1.0"

from forensics.errors import ForensicsError  # noqa: E402
from forensics.workspace import Workspace, init, open  # noqa: E402,A004

__all__ = ["Workspace", "init", "open", "ForensicsError", "__version__"]
