"""The quality wing: measuring what an index gives and costs.

    evaluate.py    `simdex.evaluate`: Recall@k, MRR, nDCG, latency and size of models x index variants
    cost.py        `simdex cost`: the storage bill of an index layout (bytes measured on real indexes)
    reduction.py   `simdex.reduction_report`: recall and size of PCA / random-projection dimensions

Query diagnostics (`simdex.diagnostics`) stay beside `Index`, whose ``search(..., diagnostics=True)`` uses them.
Nothing here is imported by ``import simdex``; the names resolve on first use.
"""
