"""Backtesting retraining policies: replay history through the monitor's own code before turning
a policy on.

``spec`` reads the backtest file (the history to replay, the policies as ``monitor`` overrides),
``history`` generates the simulated hours and when each label lands, ``replay`` runs every policy's
windows through ``tasks.monitoring.window.analyze`` and ``decision.decide`` in simulated time,
``models`` trains and gates retrains with ``tasks.training`` (no MLflow), ``summary`` and
``report`` make the numbers, the HTML page and its JSON. Nothing here imports Airflow.

    airloop backtest [--policies config/backtest/policies.yaml] [--scenario ramp] [--out DIR]
"""
