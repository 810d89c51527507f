"""What every estimator shares: parameters -> the task's config, fitting through the task's
template, and the run directory (the CLI's format) for save/load.

An estimator's parameters carry the task config's field names (``hidden_size``,
``epochs``, ...), plus ``random_state`` (the config's ``seed``) and ``verbose``
(its ``progress``). ``fit`` builds the config and calls ``Task.fit(cfg, raw,
holdout=False)``, the path ``grukit train`` takes, so the model, splits and
scaling are the CLI's; nothing is written unless ``save`` is called.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from pathlib import Path
from typing import Any, ClassVar, Generic

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, check_random_state

from ..tasks.base import S, Task, TaskConfig, run_task_name, save_run
from ..training import read_json, write_json
from ..training.checkpoint import save_tensors
from ..training.loop import HISTORY_FILE, MODEL_FILE, STATE_FILE

ESTIMATOR_FILE = "estimator.json"  # the estimator's class and parameters, beside the CLI's files
NO_FILE = "(arrays passed to fit; give --data FILE)"  # the run's --data: there was no file
_NOT_CONFIG = ("random_state", "verbose")


def _flag_to_param(message: str) -> str:
    """A config error names CLI flags (--hidden-size); an estimator's names its parameter (hidden_size)."""
    return re.sub(r"--([a-z][a-z0-9-]*)", lambda m: m.group(1).replace("-", "_"), message)


def seed_of(random_state: Any) -> int:
    """random_state -> the config's seed: an int is the seed itself (as --seed); None draws one
    from NumPy's global generator (a different model each fit), a RandomState draws from it."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        seed = int(random_state)  # exact for an Integral
        if not 0 <= seed < 2**32:
            raise ValueError(f"random_state must be in [0, 2**32), got {random_state}")
        return seed
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


class GRUEstimator(BaseEstimator, Generic[S]):
    """Base of the estimators: a task, the config fields the parameters fill, and the run format.
    Generic over the task's State (``state_``)."""

    _task: ClassVar[Task]
    _fixed: ClassVar[dict] = {}  # config values every fit uses, whatever the parameters

    # ---- config ------------------------------------------------------------------

    def _config(self) -> TaskConfig:
        """The task config from the parameters (ValueError naming a bad parameter)."""
        fields = {f.name: f for f in dataclasses.fields(self._task.Config)}
        values = {}
        for name, value in self.get_params(deep=False).items():
            if name in _NOT_CONFIG:
                continue
            kind = type(fields[name].default)
            if kind is bool and isinstance(value, (bool, np.bool_)):
                value = bool(value)
            elif kind is int and isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
                value = int(value)
            elif kind is float and isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
                value = float(value)
            elif kind is str and isinstance(value, str):
                pass
            else:
                raise ValueError(f"{type(self).__name__}: {name} must be {kind.__name__}, got {value!r}")
            values[name] = value
        for name in ("hidden_size", "embed_dim"):  # 0 means "auto" on the CLI; an estimator's sizes are explicit
            if name in values and values[name] < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be >= 1, got {values[name]}")
        values.update(self._fixed, seed=seed_of(self.random_state), progress=bool(self.verbose))
        cfg = self._task.Config(**values)
        try:
            cfg.validate()
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: {_flag_to_param(str(e))}") from None
        return cfg

    @classmethod
    def _params_from_config(cls, cfg: TaskConfig) -> dict:
        """Parameters that rebuild ``cfg`` (for a run the CLI trained)."""
        params = {name: getattr(cfg, name) for name in cls._get_param_names() if name not in _NOT_CONFIG}
        return {**params, "random_state": cfg.seed, "verbose": False}

    # ---- fit -------------------------------------------------------------------------

    def _fit_raw(self, raw: Any) -> None:
        """Train through the task's template (no test part held out) and keep what it made."""
        cfg = self._config()
        try:
            fitted = self._task.fit(cfg, raw, holdout=False)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: {_flag_to_param(str(e))}") from None
        self.seed_ = cfg.seed
        self.history_ = fitted.history
        self._set_fitted(fitted.cfg, fitted.state, fitted.model.eval(), {})

    def _set_fitted(self, cfg: TaskConfig, state: S, model, meta: dict) -> None:
        """Set the fitted attributes from a config, state, model and estimator.json's extras."""
        self.config_, self.state_, self.model_ = cfg, state, model

    def _extras(self) -> dict:
        """What the estimator adds to estimator.json besides its parameters (classes, ...)."""
        return {"history": self.history_}

    # ---- the run directory ----------------------------------------------------------

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the fitted model as a grukit run: config.json and model.safetensors as ``grukit train``
        writes them (so ``grukit predict DIR --data FILE`` and ``grukit eval DIR --data FILE`` read it),
        plus estimator.json (this class and its parameters). An existing run is replaced only with
        ``overwrite=True``; a non-empty folder that holds no run, never."""
        check_is_fitted(self)
        out = Path(path)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            try:
                run_task_name(out)
            except (OSError, ValueError):
                raise FileExistsError(f"{out} exists and holds no grukit run; choose a new directory") from None
            if not overwrite:
                raise FileExistsError(f"{out} holds a grukit run; pass overwrite=True to replace it")
            for stale in [STATE_FILE, HISTORY_FILE, "metrics.json", *(p.name for p in out.glob("*.png"))]:
                (out / stale).unlink(missing_ok=True)  # the replaced run's training records
        out.mkdir(parents=True, exist_ok=True)
        save_run(out, self._task, self.config_, self.state_)
        save_tensors(out / MODEL_FILE, self.model_.state_dict())
        params = {
            k: v.item() if isinstance(v, np.generic) else v
            for k, v in self.get_params(deep=False).items()
            if k != "random_state"
        }  # NumPy scalars as JSON numbers
        write_json(
            out / ESTIMATOR_FILE,
            {"estimator": type(self).__name__, "params": {**params, "random_state": self.seed_}, **self._extras()},
        )
        return out

    @classmethod
    def load(cls, path: str | Path):
        """The fitted estimator of a run directory: one ``save`` wrote, or one ``grukit train`` wrote
        for this estimator's task. Another task's run is refused with the class that loads it."""
        run = Path(path)
        name = run_task_name(run)
        if name != cls._task.name:
            raise ValueError(
                f"{run} holds a {name!r} run; {cls.__name__} loads {cls._task.name!r} runs"
                + (f" (use {LOADERS[name]}.load)" if name in LOADERS else "")
            )
        cfg, state, model = cls._task.load(run)
        cls._check_run(state, run)
        meta = read_json(run / ESTIMATOR_FILE) if (run / ESTIMATOR_FILE).is_file() else {}
        if (
            not isinstance(meta, dict)
            or meta.get("estimator") != cls.__name__
            or not isinstance(meta.get("params"), dict)
        ):
            meta = {}
        params = cls._params_from_config(cfg)
        params.update({k: v for k, v in meta.get("params", {}).items() if k in params})
        est = cls(**params)
        est.seed_, est.history_ = cfg.seed, meta.get("history", [])
        est._set_fitted(cfg, state, model, meta)
        return est

    @classmethod
    def _check_run(cls, state: S, run: Path) -> None:
        """Refuse a run of the right task that this class cannot use (text vs series)."""

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")


LOADERS = {"classify": "GRUClassifier or GRUTextClassifier", "regress": "GRURegressor", "forecast": "GRUForecaster"}
