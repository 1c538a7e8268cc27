"""Pipelines: whole runs built from a task, a model and its denoisers.

``train`` (one model: the loop, checkpoints, selection, evaluation), ``denoise`` (keep scores and
the cleaned export of a trained run), ``lightgnn`` (LightGNN's teacher -> intermediate ->
pruned, distilled student stages). The CLI calls them; nothing below imports them.
"""
