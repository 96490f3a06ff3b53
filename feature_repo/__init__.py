"""airloop's Feast feature repository (definitions in ``definitions.py``, CLI entry in ``repo.py``)."""
