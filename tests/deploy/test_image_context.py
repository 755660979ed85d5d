"""The Dockerfile's build context is enough to install graphhook (Docker itself is not needed here).

The files the Dockerfile COPYs before ``pip install -c constraints.txt .`` are copied to an empty directory and built
into a wheel there, as the image build would: the wheel must hold every package and the
``graphhook`` console script. Links in the deploy guide must point at files that exist.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT


def copied_before_install() -> list[str]:
    """Sources of the COPY lines that precede ``pip install -c constraints.txt .`` (the build stage)."""
    text = (ROOT / "Dockerfile").read_text()
    head = text[: text.index("pip install -c constraints.txt .")]
    sources = []
    for line in re.findall(r"^COPY (.+)$", head, flags=re.M):
        parts = line.split()
        sources += parts[:-1]
    return sources


@pytest.mark.skipif(importlib.util.find_spec("wheel") is None,
                    reason="the 'wheel' package (dev extra) is needed to build without network access")
def test_wheel_builds_from_the_docker_context_alone(tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    for source in copied_before_install():
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, context / source)
    out = tmp_path / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--quiet", "-w", str(out), str(context)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheel = next(out.glob("graphhook-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("receiver/app.py", "receiver/gunicorn_conf.py", "graphhook/core/settings.py", "workers/jobs.py",
                   "workers/triggers/handlers.py", "workers/check/checklist.py",
                   "graphhook/cli.py", "graphhook/commands/check.py", "emulator/server.py"):
        assert module in names, f"{module} missing from the image's install"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "graphhook = graphhook.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_deploy_guide_links_point_at_files():
    for doc in (ROOT / "deploy" / "README.md", ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
