"""Every public estimator documents each of its parameters (numpydoc style).

In the spirit of skglm's ``test_docstring_parameters``: a parameter added to
``__init__`` without a ``name : type`` entry in the class docstring fails here.
"""
import importlib

import pytest

import linrfm
import linrfm.baselines

PUBLIC = [(linrfm, name) for name in linrfm._ESTIMATORS] + \
         [(linrfm.baselines, name) for name in linrfm.baselines._BASELINES]


def _documented(doc: str) -> set[str]:
    """Names in the Parameters section: ``name : type`` lines and numpydoc's
    grouped ``a, b, c`` lines (no colon), at the section's indentation."""
    if "Parameters\n" not in doc:
        return set()
    section = doc.split("Parameters\n", 1)[1].replace("\\\n", " ")
    lines = section.split("\n")[1:]  # skip the dashes
    indent = len(lines[0]) - len(lines[0].lstrip())
    names = set()
    for line in lines:
        if not line.strip():
            continue
        if len(line) - len(line.lstrip()) < indent:
            break
        if len(line) - len(line.lstrip()) == indent:
            if line.strip() in ("Attributes", "Returns", "Notes", "Examples"):
                break
            names.update(n.strip() for n in line.split(" :")[0].split(","))
    return names


@pytest.mark.parametrize("module, name", PUBLIC, ids=[n for _, n in PUBLIC])
def test_every_parameter_is_documented(module, name):
    if name.startswith("Deep") or name == "DiagonalNetworkRegressor":
        pytest.importorskip("torch")
    cls = getattr(module, name)
    params = set(cls().get_params(deep=False))
    missing = params - _documented(cls.__doc__ or "")
    assert not missing, f"{name} does not document {sorted(missing)}"


def test_registries_resolve():
    for module, name in PUBLIC:
        assert getattr(module, name).__name__ == name
    assert importlib.import_module("linrfm.experiments").EXPERIMENTS
