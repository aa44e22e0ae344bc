"""Settings from the environment: a variable NAME, or the file named by NAME_FILE (how the Kubernetes
manifests hand over secrets)."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from activity_service.settings.env import env_bool, env_int, env_list, env_str


def test_a_variable_is_read_from_the_file_its_FILE_variable_names_without_the_final_newline(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t value\n")
    monkeypatch.delenv("SOME_SECRET", raising=False)
    monkeypatch.setenv("SOME_SECRET_FILE", str(secret))
    assert env_str("SOME_SECRET", "default") == "s3cr3t value"


def test_every_kind_of_setting_can_come_from_a_file(monkeypatch, tmp_path):
    for name, text in (("A_NUMBER", "42\n"), ("A_FLAG", "true"), ("A_LIST", "a, b")):
        (tmp_path / name).write_text(text)
        monkeypatch.setenv(f"{name}_FILE", str(tmp_path / name))
    assert env_int("A_NUMBER", 1) == 42
    assert env_bool("A_FLAG", False) is True
    assert env_list("A_LIST", []) == ["a", "b"]


def test_without_either_variable_the_default_applies(monkeypatch):
    monkeypatch.delenv("UNSET_SETTING", raising=False)
    monkeypatch.delenv("UNSET_SETTING_FILE", raising=False)
    assert env_str("UNSET_SETTING", "default") == "default"


def test_setting_both_a_variable_and_its_file_is_refused(monkeypatch, tmp_path):
    (tmp_path / "value").write_text("from the file")
    monkeypatch.setenv("TWICE", "from the environment")
    monkeypatch.setenv("TWICE_FILE", str(tmp_path / "value"))
    with pytest.raises(ImproperlyConfigured, match="TWICE and TWICE_FILE are both set"):
        env_str("TWICE", "default")


def test_a_file_that_cannot_be_read_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("MISSING", raising=False)
    monkeypatch.setenv("MISSING_FILE", str(tmp_path / "absent"))
    with pytest.raises(ImproperlyConfigured, match="MISSING_FILE=.*absent.* cannot be read"):
        env_str("MISSING", "default")
