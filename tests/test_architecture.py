"""The import rule of docs/architecture.md, read from the code itself: the project imports the app, never the
other way; inside the app, the API and the pipeline stand on storage, storage on the event, and no room
reaches up or sideways; only the adapter module touches kafka-python's private names."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "logs"

# What each room of the app may import from the app (besides itself). The event (`events`, `money`,
# `currencies`) and Django's own places are named by module.
MAY_IMPORT = {
    "logs.events": {"logs.money", "logs.currencies"},
    "logs.money": set(),
    "logs.currencies": set(),
    "logs.models": set(),
    "logs.storage": {"logs.events", "logs.money", "logs.currencies"},
    "logs.pipeline": {"logs.events", "logs.money", "logs.currencies", "logs.storage"},
    "logs.api": {"logs.events", "logs.money", "logs.currencies", "logs.models", "logs.storage"},
}


def room_of(module):
    """The room a module of the app belongs to: its sub-package, or the module itself at the top."""
    parts = module.split(".")
    return ".".join(parts[:2])


def module_name(path):
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path):
    """Every module `path` imports, absolute, as written (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def app_modules():
    return sorted(path for path in APP.rglob("*.py") if "migrations" not in path.parts)


def test_the_rule_knows_every_room_of_the_app():
    rooms = {room_of(module_name(path)) for path in app_modules()} - {"logs", "logs.apps", "logs.management"}
    assert rooms == set(MAY_IMPORT), "a room was added or removed: say in MAY_IMPORT what it may import"


@pytest.mark.parametrize("path", app_modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_the_app_imports_nothing_of_the_project(path):
    assert not {name for name in imports_of(path) if name.split(".")[0] == "activity_service"}


@pytest.mark.parametrize("path", [path for path in app_modules() if room_of(module_name(path)) in MAY_IMPORT],
                         ids=lambda path: str(path.relative_to(ROOT)))
def test_each_room_imports_only_the_rooms_below_it(path):
    room = room_of(module_name(path))
    reached = {room_of(name) for name in imports_of(path) if name.split(".")[0] == "logs" and name != "logs"}
    assert reached - {room} <= MAY_IMPORT[room], f"{room} may import only {sorted(MAY_IMPORT[room])}"


def kafka_python_private_uses(path):
    """Attribute reads like `x._manager` on names that come from kafka-python, crudely: any `._name` access
    in a module that imports kafka, other than on `self` or `cls`."""
    text = path.read_text()
    if not re.search(r"^\s*(from|import) kafka\b", text, flags=re.M):
        return set()
    tree = ast.parse(text)
    private = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in {"self", "cls"}):
                private.add(node.attr)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and str(node.args[1].value).startswith("_")):
            private.add(node.args[1].value)
    return private


@pytest.mark.parametrize("path", app_modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_only_the_adapter_touches_kafka_pythons_private_names(path):
    if path == APP / "pipeline" / "kafka_internals.py":
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert all(f"`{name}" in docstring or f".{name}" in docstring for name in kafka_python_private_uses(path))
        return
    # mongoengine's own underscore API (`_get_collection`, `_fields`, ...) is its documented way to reach pymongo.
    mongoengine_api = {"_get_collection", "_get_db", "_get_collection_name", "_fields", "_from_son", "_document",
                       "_meta", "_form_classes"}
    assert kafka_python_private_uses(path) - mongoengine_api == set()
