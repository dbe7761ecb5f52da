"""Task kinds: what a model's outputs mean and how a rung is scored.

One module per kind owns its loss, its per-sample predictions, its metric with a 95% interval,
its paired test between two rungs with a verdict in words, and the words and figures the findings
and the report use:

- classification (classification.py): error rate, Wilson interval, McNemar's exact test;
- regression (regression.py), one or several outputs: MAE/RMSE (overall and per output), t-interval,
  Wilcoxon signed-rank;
- anomaly (anomaly.py): an autoencoder's reconstruction error as anomaly score, ROC AUC with
  DeLong's interval, paired DeLong test, score agreement.

The ladder, explain, validate and the report ask ``get_task(data.task)`` instead of branching.
"""

from __future__ import annotations

from mcuquant.errors import ConfigError
from mcuquant.tasks.anomaly import Anomaly
from mcuquant.tasks.base import Task
from mcuquant.tasks.classification import Classification
from mcuquant.tasks.regression import Regression

TASKS: dict[str, Task] = {t.name: t for t in (Classification(), Regression(), Anomaly())}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; mcuquant knows {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "Task", "get_task"]
