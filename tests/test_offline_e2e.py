"""Offline, proven in real processes: `lmdesk ask` works end to end with the network blocked at
the socket level; an outbound connection is refused with a message naming it; importing every
dependency and every lmdesk module opens no connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Installed in every Python process of the run (the CLI and its spawned model worker) through
# sitecustomize: the network is blocked at the socket level for the whole process tree.
SITECUSTOMIZE = """
import os
from tui.offline import install_from_env
if install_from_env() and os.environ.get("GUARDED_PIDS"):
    open(os.path.join(os.environ["GUARDED_PIDS"], str(os.getpid())), "w").close()
"""

# `lmdesk ask` as main() runs it, with offline mode applied first (until the lead wires
# --offline into tui.cli.main, this is what main() will do).
RUN_CLI = """
import sys
from tui.config import Settings
from tui.offline import apply_offline_mode, guard_installed
state = apply_offline_mode(Settings(), None)
assert state.offline and guard_installed()
from tui.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    env.update(extra)
    return env


@pytest.mark.model
def test_ask_works_end_to_end_with_the_network_blocked(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    env = _env(tmp_path, LMDESK_OFFLINE="1", GUARDED_PIDS=str(pids))
    result = subprocess.run(
        [sys.executable, "-c", RUN_CLI, "ask", "--json", "--max-tokens", "8",
         "--temperature", "0", "Say hello"],
        capture_output=True, text=True, timeout=180, env=env, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["reply"].strip() and record["error"] is None
    assert record["stats"]["generated_tokens"] > 0
    assert len(list(pids.iterdir())) >= 2, "the CLI and its model worker both ran guarded"


PROBE = """
import json, socket, urllib.error, urllib.request
from tui.config import Settings
from tui.offline import OfflineError, apply_offline_mode, refused
apply_offline_mode(Settings(), None)
out = {}
try:
    urllib.request.urlopen("https://huggingface.co/api/models", timeout=5)
except urllib.error.URLError as exc:
    out["urllib"] = str(exc.reason)
    out["urllib_is_offline"] = isinstance(exc.reason, OfflineError)
try:
    socket.create_connection(("1.1.1.1", 53), timeout=5)
except OfflineError as exc:
    out["raw"] = str(exc)
from huggingface_hub import hf_hub_download  # imported after: it sees HF_HUB_OFFLINE=1
try:
    hf_hub_download("bartowski/Qwen2.5-7B-Instruct-GGUF", "x.gguf", cache_dir=%(cache)r)
except Exception as exc:
    out["hf"] = type(exc).__name__ + ": " + str(exc)[:300]
out["refused"] = refused()
print(json.dumps(out))
"""


def test_an_outbound_connection_is_refused_with_the_message(tmp_path: Path) -> None:
    env = _env(tmp_path)
    env.pop("LMDESK_OFFLINE", None)  # offline by default: the config's default decides
    script = PROBE % {"cache": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["urllib"] == (
        "offline mode: refused a connection to huggingface.co:443 "
        "(turn it off with --online or LMDESK_OFFLINE=0)"
    )
    assert out["urllib_is_offline"] is True
    assert out["raw"].startswith("offline mode: refused a connection to 1.1.1.1:53")
    # huggingface_hub gives up by itself (offline switch) before it touches a socket
    assert "offline" in out["hf"].lower() or "LocalEntryNotFound" in out["hf"], out["hf"]
    assert out["refused"] == ["huggingface.co:443", "1.1.1.1:53"]


DEPENDENCIES = (
    "textual", "textual.app", "huggingface_hub", "huggingface_hub.hf_api", "tinydb", "psutil",
    "pygments", "pygments.lexers", "platformdirs", "pynvml", "yaml",
)

RECORDER = """
import json, pkgutil, importlib, socket, sys
attempts = []
def record(kind):
    def refuse(*args, **kwargs):
        attempts.append([kind, repr(args[1:] if kind.startswith("connect") else args)[:200]])
        raise OSError("recorded: no network in this test")
    return refuse
socket.socket.connect = record("connect")
socket.socket.connect_ex = record("connect_ex")
socket.getaddrinfo = record("getaddrinfo")
socket.create_connection = record("create_connection")
socket.gethostbyname = record("gethostbyname")
failed = {}
for name in %(deps)r:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        failed[name] = str(exc)
import tui
mods = [m.name for m in pkgutil.walk_packages(tui.__path__, "tui.")]
for name in mods:
    importlib.import_module(name)
before = list(attempts)
try:
    socket.create_connection(("example.org", 80))  # the recorder itself must see this one
except OSError:
    pass
print(json.dumps({"attempts": before, "sanity": attempts[len(before):], "failed": failed,
                  "modules": len(mods), "llama_cpp": "llama_cpp" in sys.modules}))
"""


def test_no_dependency_or_module_phones_home_on_import() -> None:
    # Online, with no offline or telemetry switch set: imports alone must stay silent.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_HUB_", "LMDESK_OFFLINE", "DO_NOT_TRACK"))}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-c", RECORDER % {"deps": DEPENDENCIES}],
                            capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["failed"] == {}, out["failed"]
    assert out["modules"] > 20
    assert out["attempts"] == [], out["attempts"]
    assert out["sanity"], "the recorder did not see a deliberate connection"
    assert out["llama_cpp"] is False, "importing lmdesk's modules must not import llama_cpp"


def test_the_guard_script_needs_no_network_module_at_import() -> None:
    """tui.offline must be importable first thing (before huggingface_hub)."""
    code = textwrap.dedent("""
        import sys, tui.offline
        print(sorted(m for m in ("huggingface_hub", "httpx", "requests") if m in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
