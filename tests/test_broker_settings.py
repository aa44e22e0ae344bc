"""How the Kafka clients log in: KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_CAFILE, turned into
kafka-python's arguments, or refused with one line naming the setting to change."""

import os
import subprocess
import sys

import pytest

from logs.pipeline.broker import BrokerMisconfigured, client_config, security_config
from tests.support import ROOT

SECURITY_SETTINGS = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
                     "KAFKA_SSL_CAFILE")


@pytest.fixture
def kafka_security(settings):
    for name in SECURITY_SETTINGS:
        setattr(settings, name, "")
    settings.KAFKA_SECURITY_PROTOCOL = "PLAINTEXT"
    return settings


def test_by_default_clients_connect_in_plaintext_without_credentials(kafka_security):
    assert security_config() == {"security_protocol": "PLAINTEXT"}


def test_sasl_credentials_reach_every_client_with_plain_as_the_default_mechanism(kafka_security):
    kafka_security.KAFKA_SECURITY_PROTOCOL = "sasl_ssl"
    kafka_security.KAFKA_SASL_USERNAME, kafka_security.KAFKA_SASL_PASSWORD = "app", "pw"
    config = client_config(client_id="x")
    assert {key: config[key] for key in ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                                         "sasl_plain_password", "client_id")} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_plain_username": "app",
        "sasl_plain_password": "pw", "client_id": "x"}


def test_a_readable_ca_file_is_passed_with_tls(kafka_security, tmp_path):
    (tmp_path / "ca.pem").write_text("certificates")
    kafka_security.KAFKA_SECURITY_PROTOCOL, kafka_security.KAFKA_SSL_CAFILE = "SSL", str(tmp_path / "ca.pem")
    assert security_config() == {"security_protocol": "SSL", "ssl_cafile": str(tmp_path / "ca.pem")}


@pytest.mark.parametrize("changes, message", [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS' is not one of"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "app"}, "needs KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_USERNAME": "app",
      "KAFKA_SASL_PASSWORD": "pw"}, "KAFKA_SASL_MECHANISM='GSSAPI' is not one of"),
    ({"KAFKA_SASL_USERNAME": "app", "KAFKA_SASL_PASSWORD": "pw"},
     "KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use them"),
    ({"KAFKA_SSL_CAFILE": "/etc/ca.pem"}, "KAFKA_SECURITY_PROTOCOL=PLAINTEXT has no TLS"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "is not a readable file"),
])
def test_a_combination_that_cannot_log_in_is_one_line_naming_the_setting(kafka_security, changes, message):
    for name, value in changes.items():
        setattr(kafka_security, name, value)
    with pytest.raises(BrokerMisconfigured, match=message) as refused:
        security_config()
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("command", [("consume_activity", "--metrics-port", "0"), ("produce_activity", "--count", "1")])
def test_both_commands_refuse_a_login_that_cannot_work_at_start_up_before_any_server_is_reached(command):
    """No broker and no database listen at these addresses: the refusal comes before either is tried."""
    environment = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "MONGODB_URI": "mongodb://127.0.0.1:1/x",
                   "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "app"}
    for name in ("KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD_FILE"):
        environment.pop(name, None)
    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), *command], env=environment, cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "BrokerMisconfigured: KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_PASSWORD "
        "(the password may come from KAFKA_SASL_PASSWORD_FILE)"]
