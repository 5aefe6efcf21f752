from mtlkit_plugins.aggregators.mgda import MGDA
from mtlkit_plugins.aggregators.mgda_ub import MGDAUB

from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import roundoff


def test_declares_representation_level_and_behaves_as_mgda_on_a_matrix():
    assert MGDAUB.gradient_level == "representation"
    assert getattr(MGDA, "gradient_level", "parameters") == "parameters"
    for K in (2, 4):
        J = make_J(K, 12, seed=K)
        # the same code on the same input in one process: identical up to round-off
        assert float((agg("mgda_ub")(J) - agg("mgda")(J)).norm()) <= roundoff(J)
