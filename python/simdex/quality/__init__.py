"""The quality wing: measuring what an index gives and costs.

    evaluate.py    `simdex.evaluate`: Recall@k, MRR, nDCG, latency and size of models x index variants
    cost.py        `simdex cost`: the storage bill of an index layout (bytes measured on real indexes)
    calibrate.py   `simdex.calibrate`: the min_score reaching a precision or recall target on held-out queries
    chunks.py      chunk size as a swept hyperparameter of `evaluate`; recall by query and document length
    drift.py       `simdex.drift_report`: new documents or queries against the index's reference profile
    monitor.py     `index.monitor()`: rolling search latency, top-1 score and flagged-query rates (Prometheus)
    reduction.py   `simdex.reduction_report`: recall and size of PCA / random-projection dimensions
    finetune.py    `simdex.finetune`: contrastive fine-tuning, scored before and after on held-out queries

Query diagnostics (`simdex.diagnostics`) stay beside `Index`, whose ``search(..., diagnostics=True)`` uses them.
Nothing here is imported by ``import simdex``; the names resolve on first use.
"""
