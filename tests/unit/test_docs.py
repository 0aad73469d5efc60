"""The README as a newcomer relies on it: its settings table is the settings classes', its links lead somewhere,
and the commands it names exist."""

import re

import pytest

from docs.settings import BEGIN, PROCESSES, README, readme_with_table, settings_table

TEXT = README.read_text(encoding="utf-8")
REPO = README.parent


def test_the_settings_table_is_generated_from_the_settings_classes() -> None:
    assert readme_with_table(TEXT) == TEXT, "README.md's settings table is stale: run `make docs` and commit it"
    table = settings_table()
    for settings in PROCESSES.values():
        for name in settings.model_fields:
            assert f"| `{name.upper()}` |" in table


def test_a_setting_without_a_docstring_is_refused() -> None:
    from pydantic_settings import BaseSettings

    class Undocumented(BaseSettings):
        secret_knob: int = 3

    PROCESSES["undocumented"] = Undocumented
    try:
        with pytest.raises(ValueError, match="SECRET_KNOB"):
            settings_table()
    finally:
        del PROCESSES["undocumented"]
    assert BEGIN in TEXT


def test_every_relative_link_leads_to_a_file() -> None:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", TEXT)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert local, "the README links to the code"
    assert [link for link in local if not (REPO / link).exists()] == []


def test_every_make_target_named_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.M))
    named = set(re.findall(r"`make ([a-z][a-z-]*)(?=[`\s])", TEXT))
    assert named, "the README names make targets"
    assert named - targets == set()
