"""The studies' registry: the modules of the top-level ``studies`` package, or a study file a
user names by path (``normtheory run path/to/my_study.py``)."""

import dataclasses
import importlib
import importlib.util
import pkgutil
import sys
import traceback
import types
from pathlib import Path

from normtheory.study import Study


def list_studies() -> list[str]:
    """Names of the studies in the ``studies`` package."""
    try:
        package = importlib.import_module("studies")
    except ImportError:
        return []
    return sorted(
        m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")
    )


def load_study(name_or_path: str) -> Study:
    """The `Study` named `name_or_path` (a module of ``studies/``) or defined in that .py file."""
    path = Path(name_or_path)
    if name_or_path.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ValueError(f"study file {name_or_path!r} does not exist")
        module = _imported(lambda: _import_file(path), path)
    elif name_or_path in list_studies():
        module = _imported(lambda: importlib.import_module(f"studies.{name_or_path}"), None)
    else:
        raise ValueError(
            f"unknown study {name_or_path!r}; known studies: {', '.join(list_studies()) or '(none)'}"
        )
    study = getattr(module, "STUDY", None)
    if not isinstance(study, Study):
        raise ValueError(f"{name_or_path!r} defines no STUDY = Study(...)")
    if not study.description and module.__doc__:
        study = dataclasses.replace(study, description=module.__doc__.strip())
    if module.__name__.startswith("_normtheory_user_study_"):
        study = dataclasses.replace(study, source=str(path.resolve()))
    return study


def _imported(load, path: Path | None) -> types.ModuleType:
    """Runs `load`; an error in the study's own code becomes one line ``file:line: what``
    (a ValueError: exit 2 on the CLI, no traceback)."""
    try:
        return load()
    except SyntaxError as err:
        raise ValueError(
            f"{err.filename}:{err.lineno}: syntax error in the study file: {err.msg}"
        ) from None
    except Exception as err:
        frames = traceback.extract_tb(err.__traceback__)
        ours = [f for f in frames if path and Path(f.filename).resolve() == path.resolve()]
        where = ours[-1] if ours else frames[-1]
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(
            f"{where.filename}:{where.lineno}: the study file raised {type(err).__name__}: {first}"
        ) from None


def _import_file(path: Path) -> types.ModuleType:
    name = f"_normtheory_user_study_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
