"""Monitoring: is the champion still looking at the data it was trained on, and is it still right?

One monitored *window* is the live traffic the inference log holds between two times. The monitor
DAG calls, in order:

1. ``window.count_predictions(settings, start)`` — the sensor's check: live predictions logged
   since the last window's end (``store.last_window_end``), against
   ``monitor.min_new_predictions``;
2. ``window.run_window(settings, window.next_window(settings, end))`` — loads the champion's
   reference (``reference.champion_reference``: its training set and hold-out scores, cached per
   version), reads the window from the inference log (streaming, a bounded uniform sample),
   computes data drift per input column and prediction drift with Evidently (``drift``) and live
   performance on predictions whose delayed labels have arrived (``performance``), writes the
   HTML report (``report``) and stores one metrics row (``store``);
3. ``decision.decide_and_record(settings, result, last_retrain_at=..., retrain_running=...)`` —
   retrain or not, and why, given the windows before it, the cooldown and whether a retrain is
   running; recorded once per window. ``Decision.conf()`` is the train DAG run's conf.

Nothing here imports Airflow: the DAG passes in what only Airflow knows (when the last retrain
ran, whether one is running) and triggers the train DAG itself.

    python -m tasks.monitoring.window [--start ISO] [--end ISO] [--tracking-uri URI] [--decide]
"""
