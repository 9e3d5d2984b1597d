"""Add-ons that connect simdex to other libraries; each is an optional extra, imported only when used.

    langchain.py  `SimdexVectorStore`: a LangChain VectorStore over a `simdex.Collection` (extra: ``langchain``)
"""
