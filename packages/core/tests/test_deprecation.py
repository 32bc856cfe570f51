"""A renamed parameter keeps its old keyword for a while, with a FutureWarning."""

import pytest

from cellflux.deprecation import ALIASES_ATTRIBUTE, renamed_parameter


@renamed_parameter("n_states", "n_macrostates", since="0.5.0")
def macrostates(adata, *, n_macrostates=3, cluster_key=None):
    """Return what it got."""
    return adata, n_macrostates, cluster_key


def test_the_old_keyword_warns_and_reaches_the_new_parameter():
    with pytest.warns(FutureWarning, match=r"macrostates\(n_states=...\) is deprecated since 0.5.0; use n_macrostates"):
        assert macrostates("a", n_states=5) == ("a", 5, None)


def test_the_new_keyword_and_the_defaults_do_not_warn(recwarn):
    assert macrostates("a", n_macrostates=4) == ("a", 4, None)
    assert macrostates("a") == ("a", 3, None)
    assert not recwarn.list
    assert macrostates.__name__ == "macrostates" and macrostates.__doc__ == "Return what it got."


def test_both_spellings_at_once_are_refused():
    with pytest.raises(TypeError, match="got both 'n_states' and 'n_macrostates'"):
        macrostates("a", n_states=5, n_macrostates=4)


def test_renames_stack_and_positional_calls_are_unaffected():
    @renamed_parameter("k", "n_neighbors", since="0.2.0")
    @renamed_parameter("ls", "length_scale", since="0.3.0")
    def fit(x, n_neighbors=30, length_scale=1.0):
        return x, n_neighbors, length_scale

    assert fit(1, 5, 2.0) == (1, 5, 2.0)
    with pytest.warns(FutureWarning) as record:
        assert fit(1, k=5, ls=2.0) == (1, 5, 2.0)
    assert len(record) == 2
    assert getattr(fit, ALIASES_ATTRIBUTE) == {"k": ("n_neighbors", "0.2.0"), "ls": ("length_scale", "0.3.0")}


def test_a_method_is_renamed_the_same_way():
    class Model:
        @renamed_parameter("n", "size", since="1.1.0")
        def __init__(self, size=2):
            self.size = size

    with pytest.warns(FutureWarning, match="use size="):
        assert Model(n=7).size == 7


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("n", "missing", "has no parameter 'missing' that can be passed by keyword"),
        ("n", "args", "has no parameter 'args' that can be passed by keyword"),
        ("size", "other", "still has a parameter 'size'"),
    ],
)
def test_a_wrong_rename_is_refused_when_decorating(old, new, message):
    def f(size, *args, other=1): ...

    with pytest.raises(ValueError, match=message):
        renamed_parameter(old, new, since="1.0")(f)
