"""The ingest stage (``dags/ingest.py``): validate landed batches, curate the good ones, quarantine the bad.

``landing`` (which batches, where each file goes) → ``validation`` (the Great Expectations suite)
→ ``batches`` (route one batch) → ``curated`` (the curated Parquet dataset and its manifests);
``run_summary`` is what a run reports (the curated asset event, the verdict).
"""
