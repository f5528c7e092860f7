"""Opponent shaping in social dilemmas.

Layers: :mod:`episodes` (the one sampled-episode layer), :mod:`recurrent` and :mod:`agents`
(GRU agents, scripted agents, the trained agents shipped in ``trained/``), :mod:`training`
(the one self-play trainer: naive, LOQA, AdAlign, Proximal AdAlign), :mod:`exact` (the one
exact-IPD layer and the reciprocity test). Methods: :mod:`lola`, :mod:`loqa`,
:mod:`advantage_alignment`, :mod:`brs` / :mod:`brs_coin`; best responses: :mod:`best_response`
(exact, IPD) and :mod:`mcts` (planned, Coin Game); cross-play: :mod:`league`.
"""
