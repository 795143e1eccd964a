"""A realistic local video-generation gateway for tests, demos and benchmarks.

Example:
    >>> from asyncvideo.testing import FakeGateway
    >>> async def demo() -> None:
    ...     async with FakeGateway(api_key="sk-test", time_scale=0.001) as gw:
    ...         print(gw.url, gw.stats.creates)
"""

from __future__ import annotations

from ._config import GatewayConfig as GatewayConfig
from ._gateway import FakeGateway as FakeGateway
from ._mp4 import make_mp4 as make_mp4
from ._stats import CapturedRequest as CapturedRequest
from ._stats import GatewayStats as GatewayStats
from ._tasks import Phase as Phase
from ._tasks import Provider as Provider
from ._tasks import Task as Task
from ._tasks import TaskError as TaskError

__all__ = [
    "CapturedRequest",
    "FakeGateway",
    "GatewayConfig",
    "GatewayStats",
    "Phase",
    "Provider",
    "Task",
    "TaskError",
    "make_mp4",
]

for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__"):
        _obj.__module__ = __name__
del _name, _obj
