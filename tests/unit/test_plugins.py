"""cascade_ci.plugins: `module:attr` from the project root, entry points by name, and the errors for neither."""

from __future__ import annotations

import sys
import uuid
from types import SimpleNamespace

import pytest

from cascade_ci import plugins
from cascade_ci.errors import ConfigError, MissingExtraError
from cascade_ci.plugins import PluginError, available, import_attr, resolve

BUILT_INS = {
    "cascade_ci.sources": ["dlt", "files", "python"],
    "cascade_ci.gates": ["dbt", "freshness", "pandera", "rejects", "schema", "sql"],
    "cascade_ci.catalogs": ["local", "nessie"],
    "cascade_ci.engines": ["duckdb", "trino"],
}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project root holding package `<name>` (a name per test: imports are cached); sys.path is restored."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    name = f"plug_{uuid.uuid4().hex[:10]}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "gates.py").write_text(
        "class Rules:\n    class Nested:\n        limit = 42\n\n\ndef run(ctx):\n    return 'ran'\n"
    )
    (package / "broken.py").write_text("import a_dependency_that_is_not_installed_anywhere\n")
    return SimpleNamespace(root=tmp_path, name=name)


@pytest.mark.parametrize("group", sorted(BUILT_INS))
def test_built_ins_are_entry_points(group):
    assert available(group) == BUILT_INS[group]


def test_module_attr_is_imported_from_the_project_root(project):
    assert str(project.root) not in sys.path
    assert import_attr(f"{project.name}.gates:Rules.Nested.limit", project.root) == 42
    assert sys.path[0] == str(project.root)
    gate = resolve("cascade_ci.gates", f"{project.name}.gates:run", project.root)
    assert gate(None) == "ran"
    import_attr(f"{project.name}.gates:run", project.root)
    assert sys.path.count(str(project.root)) == 1  # added once


def test_entry_points_resolve_to_the_built_ins():
    from cascade_ci.catalog.local import LocalBranchCatalog
    from cascade_ci.gates import schema_gate
    from cascade_ci.sources.python import PythonSource

    assert resolve("cascade_ci.gates", "schema") is schema_gate
    assert resolve("cascade_ci.sources", "python") is PythonSource
    assert resolve("cascade_ci.catalogs", "local") == LocalBranchCatalog.from_settings


@pytest.mark.parametrize(
    ("group", "kind"),
    [("cascade_ci.gates", "gate"), ("cascade_ci.sources", "source"), ("cascade_ci.catalogs", "catalog"),
     ("cascade_ci.engines", "engine")],
)  # fmt: skip
def test_unknown_name_lists_what_is_installed(group, kind):
    with pytest.raises(PluginError) as caught:
        resolve(group, "great_expectations")
    installed = ", ".join(BUILT_INS[group])
    assert str(caught.value) == f"no {kind} named 'great_expectations' (installed: {installed}; or give module:attr)"
    assert isinstance(caught.value, ConfigError) and caught.value.exit_code == 2


def test_missing_module_is_a_plugin_error(project):
    with pytest.raises(PluginError) as caught:
        import_attr("no_such_module_anywhere:read", project.root)
    assert str(caught.value) == (
        "'no_such_module_anywhere:read': cannot import 'no_such_module_anywhere': "
        "No module named 'no_such_module_anywhere'"
    )
    with pytest.raises(PluginError, match="cannot import 'no_such_module_anywhere'"):
        resolve("cascade_ci.sources", "no_such_module_anywhere:Reader", project.root)


def test_a_module_whose_own_import_fails_names_what_is_missing(project):
    with pytest.raises(PluginError) as caught:
        import_attr(f"{project.name}.broken:read", project.root)
    assert str(caught.value) == (
        f"'{project.name}.broken:read': cannot import '{project.name}.broken': "
        "No module named 'a_dependency_that_is_not_installed_anywhere'"
    )


def test_missing_attribute_is_a_plugin_error(project):
    with pytest.raises(PluginError) as caught:
        import_attr(f"{project.name}.gates:Rules.Missing", project.root)
    assert (
        str(caught.value)
        == f"'{project.name}.gates:Rules.Missing': '{project.name}.gates' has no attribute 'Rules.Missing'"
    )


@pytest.mark.parametrize("spec", ["module_only", ":attr", "module:", ""])
def test_spec_must_be_module_colon_attr(spec):
    with pytest.raises(PluginError) as caught:
        import_attr(spec)
    assert str(caught.value) == f"{spec!r} is not of the form module:attr"


def test_entry_point_of_a_missing_extra_says_what_to_install(monkeypatch):
    def load():
        raise ModuleNotFoundError("No module named 'dlt'", name="dlt")

    ours = SimpleNamespace(load=load, dist=SimpleNamespace(name="cascade-ci"))
    theirs = SimpleNamespace(load=load, dist=SimpleNamespace(name="cascade-ci-extras"))
    monkeypatch.setattr(plugins, "_entry_points", lambda group: {"dlt": ours, "other": theirs})
    with pytest.raises(MissingExtraError) as caught:
        resolve("cascade_ci.sources", "dlt")
    assert str(caught.value) == "'dlt' needs 'dlt', which is not installed: pip install 'cascade-ci[dlt]'"
    with pytest.raises(MissingExtraError) as caught:
        resolve("cascade_ci.sources", "other")
    assert str(caught.value) == "'other' needs 'dlt', which is not installed: install it"
