"""Start-up cost: whole processes, as a shell loop or a serverless cold start sees them.

Run by hand (not part of the test suite):

    .venv/bin/python bench/cli_speed.py [--runs 40]

Times, in one run and interleaved (so that a busy moment of the machine hits
every row alike), the wall time of whole processes:

* ``python -c "pass"``: the interpreter alone, for reference;
* ``python -c "import requests"``: the yardstick;
* ``python -c "import eid_auth"``: goal within 1.1x of it;
* ``python -c "from eid_auth import EmpowerIDAuth"``: what a program using the
  auth pays before its first request (no HTTP library: the program's own loads);
* ``eid-auth token`` on a still-valid token (a profile and its token file in a
  temporary directory; no server is asked): goal within 1.3x of it.

It prints the median and the quartiles of each, and each median's ratio to
``import requests``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from eid_auth import Token
from eid_auth._profiles import Profile, save_profile
from eid_auth.stores import FileTokenStore, StoredToken

CONSOLE_SCRIPT = Path(sys.executable).with_name("eid-auth")


def signed_in(directory: Path) -> dict[str, str]:
    """The environment of a machine signed in to profile 'default' with a valid token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EID_")}
    # Installed packages come with their bytecode; let the warm-up run write
    # eid_auth's too, as an installed eid_auth has it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["EID_AUTH_CONFIG_DIR"] = str(directory / "config")
    env["EID_AUTH_DATA_DIR"] = str(directory / "data")
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        profile = Profile(name="default", server="https://eid.example.com", client_id="my-app")
        save_profile(profile)
        token = Token(
            access_token="a-valid-access-token",
            refresh_token="a-refresh-token",
            expires_at=time.time() + 86400,
            scope="openid profile",
            raw={"expires_in": 86400},
        )
        FileTokenStore(profile.token_path).write(
            StoredToken(
                client_id=profile.client_id,
                token_endpoint=profile.token_endpoint,
                generation=1,
                token=token,
                refresh_token=token.refresh_token,
            )
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return env


def wall_time(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="processes per row (default 40)")
    runs = parser.parse_args().runs
    if not CONSOLE_SCRIPT.exists():
        sys.exit(f"{CONSOLE_SCRIPT} is missing: pip install -e '.[cli]' first")
    with tempfile.TemporaryDirectory() as directory:
        env = signed_in(Path(directory))
        rows = {
            'python -c "pass"': [sys.executable, "-c", "pass"],
            'python -c "import requests"': [sys.executable, "-c", "import requests"],
            'python -c "import eid_auth"': [sys.executable, "-c", "import eid_auth"],
            'python -c "from eid_auth import EmpowerIDAuth"': [
                sys.executable,
                "-c",
                "from eid_auth import EmpowerIDAuth",
            ],
            "eid-auth token (valid token)": [str(CONSOLE_SCRIPT), "token"],
        }
        for command in rows.values():  # warm the file cache and the bytecode
            wall_time(command, env)
        times: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(runs):
            for name, command in rows.items():
                times[name].append(wall_time(command, env))
    yardstick = statistics.median(times['python -c "import requests"'])
    print(
        f"Measured on {time.strftime('%Y-%m-%d')}, CPython {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; requests "
        f"{version('requests')}, {runs} interleaved runs per row, wall time of whole processes."
    )
    print()
    print("| process | median ms | quartiles ms | vs. import requests |")
    print("|---|---:|---:|---:|")
    for name, samples in times.items():
        median = statistics.median(samples)
        low, _, high = statistics.quantiles(samples, n=4)
        print(
            f"| `{name}` | {median * 1000:.1f} | {low * 1000:.1f}-{high * 1000:.1f} | "
            f"{median / yardstick:.2f}x |"
        )


if __name__ == "__main__":
    main()
