"""What `help(Hook)` shows a user: every public hook's constructor lists all its arguments (no
``**kw`` pass-through to a private base) and its docstring names each of them."""

import inspect
import re

import pytest

import normtheory.hooks as hooks
from normtheory.hooks import Hook

PUBLIC = sorted(
    (
        obj
        for obj in vars(hooks).values()
        if inspect.isclass(obj) and issubclass(obj, Hook) and obj is not Hook
    ),
    key=lambda c: c.__name__,
)


def test_there_are_public_hooks():
    assert len(PUBLIC) >= 15


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_the_signature_lists_every_argument_and_the_docstring_names_it(cls):
    params = inspect.signature(cls).parameters
    assert not [p for p in params.values() if p.kind is p.VAR_KEYWORD], "no **kw"
    assert {"name", "every"} <= set(params)
    doc = inspect.getdoc(cls) or ""
    assert "Args:" in doc, f"{cls.__name__} docstring has no Args section"
    args = doc.split("Args:", 1)[1]
    missing = [p for p in params if not re.search(rf"\b{p}\b", args)]
    assert not missing, f"{cls.__name__} docstring does not name {missing}"
