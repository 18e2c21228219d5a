"""``rewardlab review``: a local web page over a runs directory.

Lists runs and tasks, shows each run's reward lineage (sources, diffs, videos side by side,
learning and per-component reward curves), stores ratings and feedback in the run directory
(``rewards/vN/reviews.jsonl``) and can launch ``rewardlab refine`` in the background.
Entry point: :func:`rewardlab.review.app.serve`; tests use :func:`rewardlab.review.app.create_app`.
"""
