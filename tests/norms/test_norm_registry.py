"""The norm registry (`normtheory.norms`): build_norm, list_norms, parse_norm_spec, register_norm,
norm_includes_activation. (Named ``test_norm_registry.py``: ``tests/test_registry.py`` is the
study registry's, and test basenames must be unique.)"""

import pytest
import torch

from normtheory.norms import (
    FilterResponseNorm,
    build_norm,
    list_norms,
    norm_includes_activation,
    parse_norm_spec,
    register_norm,
)

EXPECTED = {"none", "batch", "ghost_batch", "group", "layer", "instance", "batch_group", "frn"}


def test_list_norms_is_sorted_and_complete():
    names = list_norms()
    assert names == sorted(names)
    assert set(names) >= EXPECTED


def test_unknown_norm_lists_known_names():
    with pytest.raises(ValueError, match="unknown norm 'bogus'") as info:
        build_norm("bogus", 8)
    for name in list_norms():
        assert name in str(info.value)


def test_duplicate_registration_raises_and_keeps_the_original():
    with pytest.raises(ValueError, match="already registered"):
        register_norm("batch", lambda num_features: torch.nn.Identity())
    assert type(build_norm("batch", 4)).__name__ == "BatchNorm"


def test_names_with_plus_are_reserved():
    with pytest.raises(ValueError, match=r"\+"):
        register_norm("a+b", lambda num_features: torch.nn.Identity())
    assert "a+b" not in list_norms()


@pytest.mark.parametrize("num_features", [0, -2, 2.0, True, "8"])
def test_bad_num_features_raise(num_features):
    with pytest.raises(ValueError, match="num_features"):
        build_norm("batch", num_features)


@pytest.mark.parametrize(
    "name, kw, match",
    [
        ("batch", dict(foo=1), "foo"),
        ("none", dict(groups=4), "groups"),
        ("batch", dict(example_weight=1.5), "1.5"),
        ("ghost_batch", dict(ghost_size=0), "ghost_size"),
        ("group", dict(groups=0), "groups"),
        ("group", dict(eps=-1.0), "eps"),
        ("layer", dict(groups=2), "groups"),
        ("instance", dict(momentum=0.1), "momentum"),
        ("batch_group", dict(groups=2, channels_per_group=4), "not both"),
        ("batch_group", dict(channels_per_group=3), "divide"),
        ("frn", dict(eps=-1e-6), "eps"),
        ("frn", dict(affine=False), "affine"),
    ],
)
def test_bad_options_raise_value_error(name, kw, match):
    with pytest.raises(ValueError, match=match):
        build_norm(name, 8, **kw)


@pytest.mark.parametrize("name", list_norms())
def test_build_norm_gives_a_working_module(name):
    module = build_norm(name, 8)
    assert isinstance(module, torch.nn.Module)
    assert module(torch.randn(4, 8, 3)).shape == (4, 8, 3)


def test_parse_norm_spec():
    assert parse_norm_spec("group+ws") == ("group", True)
    assert parse_norm_spec("group") == ("group", False)
    assert parse_norm_spec("batch_group+ws") == ("batch_group", True)


@pytest.mark.parametrize("spec", ["group+bn", "group+", "nope+ws", "group+ws+ws", "", "+ws", 3])
def test_bad_norm_specs_raise(spec):
    with pytest.raises(ValueError):
        parse_norm_spec(spec)


def test_only_frn_includes_activation():
    assert FilterResponseNorm.includes_activation is True
    assert norm_includes_activation("frn") and norm_includes_activation("frn+ws")
    assert [n for n in list_norms() if norm_includes_activation(n)] == ["frn"]
