"""``rewardlab review``: a local web page over a runs directory.

Lists runs and tasks (sort, filter, search); per run, compares the reward versions (a table with
success intervals and the best version marked by a stated rule, learning curves of every
version overlaid, SB3 diagnostics, TensorBoard), shows the chosen versions' videos and review
forms side by side, stores ratings and feedback in the run directory
(``rewards/vN/reviews.jsonl``) and launches, watches and cancels ``rewardlab refine`` with the
budget and algorithm chosen on the page. Run folders are untrusted input
(:mod:`rewardlab.review.safefs`). Entry point: :func:`rewardlab.review.app.serve`; tests use
:func:`rewardlab.review.app.create_app`.
"""
