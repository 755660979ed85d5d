import pytest

from graphhook.core.errors import ConfigError
from graphhook.core.settings import Settings


def test_missing_variables_are_named_with_a_hint():
    settings = Settings.from_env({"AZURE_TENANT_ID": "t"})
    with pytest.raises(ConfigError) as info:
        settings.require_graph()
    text = str(info.value)
    assert "AZURE_CLIENT_ID" in text and "AZURE_CLIENT_SECRET" in text
    assert "AZURE_TENANT_ID" not in text


def test_certificate_path_satisfies_the_credential_requirement():
    Settings.from_env({"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c",
                       "AZURE_CLIENT_CERTIFICATE_PATH": "/x.pem"}).require_graph()


@pytest.mark.parametrize("name,value", [
    ("PUBLIC_URL", "http://insecure.example.com"),
    ("GRAPH_URL", "http://graph"),
    ("REDIS_URL", "mysql://db"),
    ("GRAPHHOOK_MAX_BODY_BYTES", "lots"),
    ("REDIS_SSL_CERT_REQS", "maybe"),
])
def test_bad_values_are_refused_quoting_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_secret_never_in_repr():
    settings = Settings.from_env({"AZURE_CLIENT_SECRET": "s3cr3t-value"})
    assert "s3cr3t-value" not in repr(settings)


def test_settings_are_frozen():
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.tenant_id = "x"  # type: ignore[misc]
