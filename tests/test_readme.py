"""The README's pytest example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from eid_auth.testing import EmpowerIDTestServer

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_pytest_example(server: EmpowerIDTestServer) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    (example,) = [b for b in blocks if "def test_my_client(empowerid_server)" in b]
    namespace: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102
    test = namespace["test_my_client"]
    assert callable(test)
    test(server)
    assert server.refresh_grants == 1
