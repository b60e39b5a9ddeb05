"""The HTTP client libraries eid_auth works with, known without importing them.

``import eid_auth`` loads none of requests, httpx, httpx2 or aiohttp: a program
pays only for the library it uses. What eid_auth needs from a library it finds
in ``sys.modules`` (a request or client of that library exists, so the library
is loaded), or imports when a path truly needs it, with an error that names the
extra to install.
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType
from typing import Any, Literal

from ._exceptions import ConfigurationError

__all__ = [
    "LIBRARIES",
    "ClientAuthClasses",
    "Library",
    "default_library",
    "library_of",
    "loaded",
    "require",
]

Library = Literal["requests", "httpx", "httpx2", "aiohttp"]
LIBRARIES: tuple[Library, ...] = ("requests", "httpx", "httpx2", "aiohttp")

# What to install for each library (requests and httpx are in the base install).
_INSTALL = {
    "requests": "pip install requests",
    "httpx": "pip install httpx",
    "httpx2": "pip install 'eid-auth[httpx2]'",
    "aiohttp": "pip install 'eid-auth[aiohttp]'",
}


def loaded(library: Library) -> ModuleType | None:
    """The library's module if something has imported it already, else None."""
    return sys.modules.get(library)


def require(library: Library) -> ModuleType:
    """Import ``library``; a ConfigurationError naming the extra when it is missing."""
    try:
        return importlib.import_module(library)
    except ImportError as exc:
        raise ConfigurationError(f"{library} is not installed: {_INSTALL[library]}") from exc


def default_library() -> Library:
    """The library for requests no signed request chose (``EmpowerIDClient``, an
    explicit ``refresh()``): one the program has loaded already, else the first
    one installed, so nothing new is imported when something fits."""
    candidates: tuple[Library, ...] = ("httpx", "httpx2", "requests")
    for library in (*candidates, "aiohttp"):
        if sys.modules.get(library) is not None:  # None: blocked on purpose
            return library
    import importlib.util

    for library in candidates:
        if importlib.util.find_spec(library) is not None:
            return library
    return "httpx"  # not installed: require() then says what to install


def library_of(obj: object) -> Library | None:
    """The library ``obj`` (a request, response or client, or an instance of a
    subclass of one) belongs to, if one of ours."""
    for cls in type(obj).__mro__:
        root = cls.__module__.partition(".")[0]
        for library in LIBRARIES:
            if root == library:
                return library
    return None


def _auth_base_classes() -> tuple[type, ...]:
    """The base classes a client library checks an ``auth=`` object against,
    for the libraries loaded now."""
    found: list[type] = []
    for module_name, attribute in (
        ("requests.auth", "AuthBase"),
        ("httpx", "Auth"),
        ("httpx2", "Auth"),
    ):
        module = sys.modules.get(module_name)
        base = getattr(module, attribute, None)  # None while the module is half-imported
        # After httpx2.alias_httpx(), "httpx" is httpx2: one base class, not two.
        if isinstance(base, type) and base not in found:
            found.append(base)
    return tuple(found)


_classes: dict[tuple[type, tuple[type, ...]], type] = {}
_classes_lock = threading.Lock()


class ClientAuthClasses:
    """Makes an instance pass ``isinstance(auth, httpx.Auth)``, ``httpx2.Auth`` and
    ``requests.auth.AuthBase`` without importing those libraries.

    httpx and httpx2 refuse an ``auth=`` object that is not an instance of their
    ``Auth``; subclassing both would load both on ``import eid_auth``. ``isinstance``
    also consults an object's ``__class__`` attribute (``unittest.mock`` relies on
    this for ``spec``): here it names a subclass that adds the base classes of the
    libraries loaded at the moment of the check. The methods still come from the
    real class, listed first; ``type(auth)`` is unchanged.
    """

    __slots__ = ()

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        own = type(self)
        bases = _auth_base_classes()
        if not bases:
            return own
        key = (own, bases)
        cls = _classes.get(key)
        if cls is None:
            with _classes_lock:
                cls = _classes.get(key)
                if cls is None:
                    namespace: dict[str, Any] = {
                        "__module__": own.__module__,
                        "__qualname__": own.__qualname__,
                        "__doc__": own.__doc__,
                    }
                    cls = _classes[key] = type(own.__name__, (own, *bases), namespace)
        return cls
