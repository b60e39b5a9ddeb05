"""Where ``EmpowerIDAuth`` keeps its token, and how processes share one refresh.

* ``MemoryTokenStore``: this process only (the default).
* ``FileTokenStore``: every process of one machine (gunicorn workers, Celery
  workers, cron jobs, a CLI run twice at once).
* ``RedisTokenStore``: every process of every machine sharing one Redis
  (needs ``pip install 'eid-auth[redis]'``).

Every store is used the same way: ``EmpowerIDAuth(..., store=store)``.
"""

from .._exceptions import TokenStoreError
from ._base import StoredToken, TokenStore
from ._file import FileTokenStore
from ._keyring import KeyringTokenStore  # light: imports keyring when made
from ._memory import MemoryTokenStore
from ._redis import RedisTokenStore

__all__ = [
    "FileTokenStore",
    "KeyringTokenStore",
    "MemoryTokenStore",
    "RedisTokenStore",
    "StoredToken",
    "TokenStore",
    "TokenStoreError",
]
