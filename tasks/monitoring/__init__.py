"""Monitoring: is the champion still looking at the data it was trained on, and is it still right?

One monitored *window* is the live traffic the inference log holds between two times. For each
window the monitor DAG calls, in order:

1. ``reference.champion_reference`` — the champion's training set (a uniform sample of it) and its
   scores and metrics on its own hold-out split, cached per model version;
2. ``window.run_window`` — reads the window from the inference log (streaming, a bounded uniform
   sample), computes data drift per input column and prediction drift with Evidently
   (``drift``), live performance on predictions whose delayed labels have arrived
   (``performance``), writes the HTML report (``report``) and stores one metrics row (``store``);
3. ``decision.decide_and_record`` — retrain or not, and why, given the window, the windows
   before it, the cooldown and whether a retrain is running; every decision is stored.

Nothing here imports Airflow: the DAG passes in what only Airflow knows (when the last retrain
ran, whether one is running) and triggers the train DAG with ``Decision.conf``.

    python -m tasks.monitoring.window --end 2026-01-02T12:00:00Z [--start ...] [--tracking-uri ...]
"""
