"""A throwaway plugin package for the extension tests (a new loss, family or head as the user would write it)."""
import textwrap


def plugin(tmp_path, monkeypatch, name: str, modules: dict[str, str]) -> str:
    """A package ``name`` in ``tmp_path`` with these modules, importable for the test."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for module, source in modules.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name
