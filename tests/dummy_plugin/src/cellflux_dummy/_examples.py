"""Representative calls for the suite's convention tests."""


def dummy_score(adata):
    return {"layer": "spliced"}


def dummy_log1p(adata):
    return {"layer": "unspliced"}
