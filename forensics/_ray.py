"""The one way the library starts or joins a Ray session (pipelines and index builds on Ray).

``ray`` is imported only when a session is asked for; without it the call raises
:class:`~forensics.errors.BackendError` naming the extra to install.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from forensics.errors import BackendError


@contextlib.contextmanager
def ray_session(address: str | None, workers: int) -> Iterator[Any]:
    """The ``ray`` module with a session: an existing one, the cluster at ``address``, or a local
    one with ``workers`` CPUs (shut down on exit only when this call started it)."""
    try:
        import ray
    except ImportError as e:
        raise BackendError("the ray engine needs Ray Data: pip install 'nla-forensics[ray]'") from e
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "configure_logging": False}
        if address:
            kw["address"] = address
        else:
            kw["num_cpus"] = max(1, workers)
        try:
            ray.init(**kw)
        except Exception as e:
            raise BackendError(f"cannot start/connect Ray ({address or 'local'}): {e}",
                               hint="check --ray-address (ray://host:10001 or auto)") from e
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        if hasattr(ctx, "enable_operator_progress_bars"):
            ctx.enable_operator_progress_bars = False
        yield ray
    finally:
        if started:
            ray.shutdown()


__all__ = ["ray_session"]
