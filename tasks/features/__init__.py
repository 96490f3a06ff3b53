"""The features stage (``dags/features.py``): feature tables, Feast, training sets, online reads.

``tables`` (windowed features from curated transactions, refreshed incrementally) → ``store``
(the Feast store, apply when changed) → ``materialization`` (push rows online); ``offline``
(point-in-time training sets) and ``online`` (the serving lookup) read what they wrote; ``cli``
is ``airloop features``.
"""
