"""Model files of the command line: an estimator plus the id maps (no pickle)."""
from __future__ import annotations

from pathlib import Path


from .ids import IdMap, ReadError

__all__ = ["save_model", "load_model"]


def _idmap_to_json(value):
    if isinstance(value, IdMap):
        return {"id_map_size": value.size, "id_map_labels": value.labels}
    return value


def _idmap_from_json(value):
    if isinstance(value, dict) and set(value) == {"id_map_size", "id_map_labels"}:
        return IdMap(int(value["id_map_size"]), value["id_map_labels"])
    return value


def save_model(path, estimator, **extra) -> Path:
    """Save a fitted estimator with ``extra`` items (id maps, input summary).

    The file is linrfm's pickle-free model format (:mod:`linrfm.persistence`);
    ``extra`` is stored as its metadata.
    """
    from ..persistence import save

    meta = {k: _idmap_to_json(v) for k, v in extra.items()}
    return save(path, estimator, metadata=meta)


def load_model(path) -> dict:
    """Load what :func:`save_model` wrote: ``{"estimator": est, **extra}``.

    Never unpickles; a file that is not a valid model raises :class:`ReadError`.
    """
    from ..persistence import load_with_metadata

    if not Path(path).is_file():
        raise ReadError(f"cannot read model {path}: no such file")
    try:
        est, meta = load_with_metadata(path)
    except ValueError as exc:
        raise ReadError(str(exc)) from None
    return {"estimator": est, **{k: _idmap_from_json(v) for k, v in meta.items()}}

