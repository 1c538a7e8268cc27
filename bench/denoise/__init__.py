"""The noise benchmark: the one harness every denoiser is judged by (SGCN paper, Fig. 4, and more).

For each noise type, noise ratio and seed it builds a data set whose noisy training pairs are
known, trains every denoiser of ``DENOISERS`` with the same budget (the project's trainer, model
selection on validation), and reports:

- test Recall@20 / NDCG@20 of the selected weights (LightGCN, the oracle LightGCN trained with
  the noise removed, each denoiser);
- ROC AUC of the denoiser's keep scores (``keep_scores(graph)``, the mean over layers for
  [K, E] scores) against the noise of the setting's type: noisy pairs of that type are the
  positives, clean pairs the negatives ("higher = keep", so the AUC is that of 1 - keep);
- the dropped set (keep score <= ``--threshold`` in every layer): its size, precision and
  recall against the noise;
- the AUC of the model's own score ⟨f_u, f_i⟩ on the training pairs (what its embeddings know);
- mean ± std over the seeds, and a PNG like the paper's Fig. 4 (Recall@20 and AUC vs ratio).

Data: ``--data synthetic`` (default): the built-in generator with planted noise of one type per
setting (``make_synthetic(noise_ratio=r, noise_mix=type)``: popularity-matched, uniform,
near-topic) and its clean validation split (``--validation noisy`` for the realistic one); its
likelihood-ratio ceiling per setting is reported as the ``generator`` row (it knows the true
preferences: no detector can beat it). ``--data gowalla`` (or a LightGCN directory): a seeded
subsample of ``--users`` users (their train and test, items seen fewer than ``--min-item`` times
in the sample dropped) with noise injected by ``inject_noise`` (uniform or popularity); the
validation split is drawn from the noisy training pairs.

A denoiser is a ``Denoiser`` entry: a model, plug-ins and options for ``train.make_config``
(anything whose trained model has ``keep_scores(graph)`` plugs in), or a ``scorer`` of the graph
alone (leave-user-out item-kNN). Finished runs are kept under ``--runs`` and reused (``--fresh``
to redo them), so a long grid can be stopped and continued.

Modules: rows.py (the denoisers: the rows of the scoreboard), settings.py (a setting's data and
the generator's bounds), run.py (training and scoring one row), report.py (mean ± std over
seeds, the table, the plot), cli.py (flags and the grid, cached runs).

    python -m bench.denoise [--quick] [--data synthetic|gowalla|DIR] [--types ...] [--ratios ...]
                            [--seeds ...] [--denoisers ...] [--epochs N] [--threads N]
"""
