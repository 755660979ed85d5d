"""The configuration file: what loads, and errors that name the file, the rule and the field."""

from __future__ import annotations

import textwrap

import pytest

from graphhook.core.errors import ConfigError
from tests.conftest import ROOT
from workers.triggers.config import load_config, validate_config
from workers.triggers.model import MailboxWatch

SECRET_ENV = {"SOAR_WEBHOOK_SECRET": "s3cr3t-value-for-tests-0123456789"}


def write(tmp_path, text: str):
    path = tmp_path / "graphhook.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_example_config_in_repo_loads_and_validates(monkeypatch):

    monkeypatch.setenv("SOAR_WEBHOOK_SECRET", SECRET_ENV["SOAR_WEBHOOK_SECRET"])
    config = validate_config(ROOT / "graphhook.example.yaml")
    assert config.rules and config.mailboxes


def test_mailboxes_default_to_inbox_and_keep_listed_folders(tmp_path):
    config = load_config(write(tmp_path, """
        mailboxes:
          - alice@contoso.com
          - {address: Bob@Contoso.com, folders: [inbox, junkemail]}
    """), env={})
    assert config.mailboxes == (MailboxWatch("alice@contoso.com", ("inbox",)),
                                MailboxWatch("bob@contoso.com", ("inbox", "junkemail")))


def test_empty_file_is_an_empty_configuration(tmp_path):
    config = load_config(write(tmp_path, ""), env={})
    assert config.mailboxes == () and config.rules == ()


def test_bad_regex_error_names_file_rule_field_and_value(tmp_path):
    path = write(tmp_path, """
        rules:
          - name: phish
            when: {all: [{sender_domain: "*.example.net"}, {subject: "(storage"}]}
    """)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert str(path) in message and "'phish'" in message
    assert "when.all[1].subject" in message and "'(storage'" in message


def test_inline_secret_is_refused_without_echoing_it(tmp_path):
    path = write(tmp_path, """
        webhooks:
          soar: {url: "https://soar.example.com/hook", secret: "hunter2-very-secret"}
    """)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert "inline secrets are not allowed" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_secret_env_must_be_set_and_is_read_from_environment(tmp_path):
    path = write(tmp_path, """
        webhooks:
          soar: {url: "https://soar.example.com/hook", secret_env: SOAR_WEBHOOK_SECRET}
    """)
    with pytest.raises(ConfigError, match="SOAR_WEBHOOK_SECRET is unset"):
        load_config(path, env={})
    config = load_config(path, env=SECRET_ENV)
    assert config.webhooks["soar"].secret == SECRET_ENV["SOAR_WEBHOOK_SECRET"]
    assert SECRET_ENV["SOAR_WEBHOOK_SECRET"] not in repr(config)


@pytest.mark.parametrize("rule, fragment", [
    ("{name: r1, when: {colour: red}}", "field when.colour: unknown condition 'colour'"),
    ("{name: r1}", "field when: missing"),
    ("{name: r1, when: always, actions: [{webhook: nope}]}", "no webhook named 'nope'"),
    ("{name: r1, when: always, actions: [{forward: {to: not-an-address}}]}", "not an email address: 'not-an-address'"),
    ("{name: r1, when: always, actions: [{delete: sometimes}]}", "field actions[0].delete"),
    ("{name: r1, when: always, actions: [{reply: 'Hi $who'}]}", "unknown template field $who"),
    ("{name: r1, when: {attachment: {sha256: abc}}}", "not a SHA-256 hex digest: 'abc'"),
    ("{name: r1, when: {authentication: {dmarc: maybe}}}", "unknown verdict 'maybe'"),
    ("{name: r1, when: {impersonates_internal: true}}", "needs organisation.domains"),
    ("{name: r1, when: always, actions: [{alert: {to: a@b.com}}]}", "needs a sending mailbox"),
    ("{name: 'bad name!', when: always}", "field name"),
])
def test_rule_errors_name_rule_and_field(tmp_path, rule, fragment):
    path = write(tmp_path, f"rules:\n  - {rule}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_duplicate_rule_names_and_unknown_top_level_keys_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="already named 'a'"):
        load_config(write(tmp_path, "rules: [{name: a, when: always}, {name: a, when: always}]"), env={})
    with pytest.raises(ConfigError, match="unknown field 'rulez'"):
        load_config(write(tmp_path, "rulez: []"), env={})


def test_missing_file_and_bad_yaml_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="not valid YAML at line 3"):
        load_config(write(tmp_path, "rules:\n  - [unclosed\n"), env={})


def test_validate_config_imports_handlers(tmp_path):
    ok = write(tmp_path, "handlers:\n  h: {path: 'json:dumps'}\n")
    assert validate_config(ok, env={}).handlers["h"].path == "json:dumps"
    bad = write(tmp_path, "handlers:\n  h: {path: 'no_such_module_xyz:run'}\n")
    with pytest.raises(ConfigError, match="handler 'h': field path: cannot import module 'no_such_module_xyz'"):
        validate_config(bad, env={})
    missing = write(tmp_path, "handlers:\n  h: {entry_point: nope}\n")
    with pytest.raises(ConfigError, match="no entry point 'nope'"):
        validate_config(missing, env={})


def test_the_example_handler_loads_by_its_current_and_its_former_path(tmp_path):
    """``workers.handlers:log_email`` (the example's path before the workers package was grouped) still loads."""
    from workers.triggers.handlers import log_email, resolve

    for path in ("workers.triggers.handlers:log_email", "workers.handlers:log_email", "workers.handlers.log_email"):
        config = validate_config(write(tmp_path, f"handlers:\n  h: {{path: '{path}'}}\n"), env={})
        assert resolve(config.handlers["h"]) is log_email


def test_disabled_rules_are_validated_but_not_loaded(tmp_path):
    config = load_config(write(tmp_path, "rules: [{name: a, when: always, enabled: false}, {name: b, when: always}]"), env={})
    assert [r.name for r in config.rules] == ["b"]


def test_handler_from_entry_point_group(tmp_path, monkeypatch):
    """A package that declares ``[graphhook.handlers]`` in its entry points is found by name."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "acme_handlers.py").write_text("def triage(email, api):\n    return 'triaged'\n")
    dist = tmp_path / "site" / "acme_handlers-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-handlers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[graphhook.handlers]\nacme-triage = acme_handlers:triage\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    from workers.triggers.handlers import resolve

    config = validate_config(write(tmp_path, "handlers:\n  triage: {entry_point: acme-triage}\n"), env={})
    assert resolve(config.handlers["triage"])({}, None) == "triaged"


def test_running_process_keeps_last_good_config_when_an_edit_breaks_it(tmp_path, caplog):
    import os

    from workers.triggers.config import config_for

    path = write(tmp_path, "rules: [{name: a, when: always}]")
    assert [r.name for r in config_for(str(path)).rules] == ["a"]
    path.write_text("rules: [{name: b, when: {subject: '('}}]")
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1_000_000))
    assert [r.name for r in config_for(str(path)).rules] == ["a"]
    assert "invalid regular expression" in caplog.text and "still using the configuration loaded before" in caplog.text
    path.write_text("rules: [{name: c, when: always}]")
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 2_000_000))
    assert [r.name for r in config_for(str(path)).rules] == ["c"]
    with pytest.raises(ConfigError, match="configuration file not found"):
        config_for(str(tmp_path / "elsewhere.yaml"))


def _webhook_config(tmp_path, url: str):
    path = write(tmp_path, f"""
        webhooks:
          soar: {{url: "{url}", secret_env: SOAR_WEBHOOK_SECRET}}
    """)
    return load_config(path, env=SECRET_ENV)


@pytest.mark.parametrize("url", [
    "http://127.evil.example/hook",          # starts like 127.x, resolves wherever evil.example says
    "http://localhost:80@evil.example/hook",  # "localhost:80" is user info; the host is evil.example
    "http://localhost.evil.example/hook",
    "http://[::1]@evil.example/hook",
    "http://10.0.0.5/hook",
])
def test_plain_http_webhook_is_refused_unless_the_parsed_host_is_loopback(tmp_path, url):
    with pytest.raises(ConfigError) as info:
        _webhook_config(tmp_path, url)
    assert "field url" in str(info.value)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://127.1.2.3/hook", "http://localhost/hook",
    "http://LOCALHOST:9000/hook", "http://[::1]:8080/hook", "https://soar.example.com/hooks/graphhook",
])
def test_loopback_http_and_any_https_webhook_are_accepted(tmp_path, url):
    assert _webhook_config(tmp_path, url).webhooks["soar"].url == url


def test_webhook_url_with_user_info_is_refused_without_echoing_it(tmp_path):
    with pytest.raises(ConfigError) as info:
        _webhook_config(tmp_path, "https://admin:hunter2-pass@soar.example.com/hook")
    assert "user info" in str(info.value)
    assert "hunter2" not in str(info.value)
