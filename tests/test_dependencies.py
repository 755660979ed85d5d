"""The installed libraries satisfy setup.cfg, and its floors leave out versions with public advisories.

The receiver writes RQ's job hash itself (receiver/store.py), so the cap below RQ's next major must
hold where the suite runs: every declared range is checked against the installed version.
"""

from __future__ import annotations

import configparser
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import ROOT

# A version each floor must exclude, with the advisory that excludes it (checked in GitHub's advisory database).
ADVISORIES = {
    "gunicorn": ("22.0.0", "GHSA-hc5x-x2vx-497g (CVE-2024-6827): request smuggling through Transfer-Encoding"),
    "requests": ("2.32.3", "GHSA-9hjg-9r4m-mvj7 (CVE-2024-47081): .netrc credentials sent to another host; "
                           "2.33.0 also fixes CVE-2026-25645"),
    "redis": ("5.2.1", "redis-py < 6 does not check the host name on rediss:// (ssl_check_hostname, redis-py #3626)"),
    "flask": ("3.1.2", "GHSA-68rp-wp8r-4726 (CVE-2026-27205): no Vary: Cookie on some session accesses"),
    "cryptography": ("48.0.0", "GHSA-537c-gmf6-5ccf: vulnerable OpenSSL in the wheels"),
    "pyjwt": ("2.12.1", "CVE-2026-48526: JWK use not checked when HMAC and asymmetric algorithms are allowed"),
}


def declared() -> dict[str, Requirement]:
    """install_requires of setup.cfg, by normalized project name."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    lines = [line.strip() for line in parser["options"]["install_requires"].splitlines()]
    requirements = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {r.name.lower(): r for r in requirements}


@pytest.mark.parametrize("name", sorted(declared()))
def test_the_installed_version_is_in_the_declared_range(name):
    requirement = declared()[name]
    installed = metadata.version(requirement.name)
    assert requirement.specifier.contains(installed, prereleases=True), \
        f"{requirement.name} {installed} is outside setup.cfg's {requirement.specifier}"


def test_libraries_whose_internals_we_use_are_capped_below_their_next_major():
    # rq: the job hash (receiver/store.py) and the worker's finalize hooks (workers/concurrent.py); redis: the
    # pub/sub listener's stop (workers/shutdown.py); gunicorn: the gevent worker's header timeout and
    # environ["gunicorn.socket"] (receiver/bodydeadline.py); cheroot: its WSGI gateway (emulator/https.py).
    for name in ("rq", "redis", "gunicorn", "cheroot"):
        specifier = declared()[name].specifier
        major = Version(metadata.version(name)).major
        assert not specifier.contains(f"{major + 1}.0.0", prereleases=True), f"{name} is not capped below {major + 1}"


@pytest.mark.parametrize("name", sorted(ADVISORIES))
def test_floors_leave_out_versions_with_advisories(name):
    version, advisory = ADVISORIES[name]
    assert not declared()[name].specifier.contains(version), f"setup.cfg allows {name} {version}: {advisory}"
