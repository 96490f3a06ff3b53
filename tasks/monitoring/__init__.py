"""Monitoring: is the champion still looking at the data it was trained on, and is it still right?

One monitored *window* is the live traffic the inference log holds between two times. The monitor
DAG calls, in order:

1. ``sensing.check(settings, start, end)`` — the sensor's check: live predictions logged since the
   last window's end (``store.last_window_end``), against ``monitor.min_new_predictions``;
2. ``window.monitor_sensed(settings, sensed)`` — loads the champion's reference
   (``reference.champion_reference``: its training set and hold-out scores, cached per version),
   reads the window from the inference log (``reading``: streaming, a bounded uniform sample),
   computes data drift per input column and prediction drift with Evidently (``drift``) and live
   performance on predictions whose delayed labels have arrived (``performance``), writes the
   HTML report (``pages``) and stores one metrics row (``store``);
3. ``decision.decide_window(settings, result, running_retrains=...)`` — retrain or not, and why,
   given the windows before it, the cooldown and whether a retrain is running; recorded once per
   window. ``decision.retrain_conf`` is the train DAG run's conf (or ``False``: no retrain).

``results`` holds the types every step shares (``Window``, ``DriftResult``, ``Performance``,
``WindowResult``) and imports none of the others. Nothing here imports Airflow: the DAG passes in
what only Airflow knows (whether a retrain is running) and triggers the train DAG itself.

    python -m tasks.monitoring.cli [--start ISO] [--end ISO] [--tracking-uri URI] [--decide]
"""
